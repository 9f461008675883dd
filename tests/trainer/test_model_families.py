"""What other model families and other tools see: a saved RM scores the same through plain
Hugging Face, dropout settings that match nothing are said, a Llama-style model gets its BOS,
and the defaults follow the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import processors
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from tests.trainer.conftest import SFT_CONFIG, Run
from tests.trainer.test_checkpoints import save_plain_hf_model, small_bpe
from trainer import data, synthetic
from trainer.config import PPOConfig, RMConfig, SFTConfig
from trainer.models import load_reward_model, load_tokenizer
from trainer.reward import train_reward_model
from trainer.score import score_records
from trainer.sft import train_sft


def test_a_saved_rm_scores_the_same_through_plain_hugging_face(tmp_path: Path) -> None:
    base = save_plain_hf_model(tmp_path / "plain")  # no pad token: pad would be EOS
    out = tmp_path / "rm"
    train_reward_model(
        str(base),
        synthetic.rankings(16, seed=1),
        out,
        demonstrations=synthetic.demonstrations(8, seed=2),
        config=RMConfig(epochs=1, lr=1e-3, batch_size=4, max_length=64),
    )
    records = synthetic.demonstrations(6, seed=3)
    bias = AutoModelForSequenceClassification.from_pretrained(out).config.reward_bias
    ours = torch.tensor([r["score"] + bias for r in score_records(str(out), records)])

    hf = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id  # a pad of its own
    ids = [data.encode_example(tokenizer, r["prompt"], r["completion"], 512)[0] for r in records]
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")  # right-padded
    with torch.no_grad():
        theirs = hf(**batch).logits.squeeze(-1)
    # with pad == EOS, HF read the token before the EOS: 2.07 where prefloop said 2.89
    assert torch.allclose(theirs, ours, atol=1e-4)


def test_rm_trains_without_dropout_and_saves_the_base_setting(sft_run: Run, tmp_path: Path) -> None:
    dropout_sft = tmp_path / "sft"
    train_sft(
        str(sft_run.path),
        synthetic.demonstrations(16),
        dropout_sft,
        config=SFT_CONFIG.replace(epochs=1, residual_dropout=0.2),
    )
    rm, _, _ = load_reward_model(str(dropout_sft), RMConfig(), trainable=True)
    rates = [m.p for m in rm.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates and max(rates) == 0.0  # were 0.2 (resid) and 0.1 (attention, embeddings)
    assert rm.config.resid_pdrop == 0.0
    with_dropout, _, _ = load_reward_model(str(dropout_sft), trainable=True, disable_dropout=False)
    assert with_dropout.config.resid_pdrop == 0.1  # the base's, not SFT's 0.2


def llama_like(path: Path) -> Path:
    """A one-layer Llama with a tokenizer that puts a BOS before every text, as Llama's."""
    tok = small_bpe(["<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_llama_style_model_sees_its_bos_and_hears_about_dropout(tmp_path: Path) -> None:
    path = llama_like(tmp_path / "llama")
    tokenizer = load_tokenizer(path)
    bos = tokenizer.bos_token_id
    assert data.encode_prompt(tokenizer, "Describe the frog.", 64)[0] == bos  # was absent
    ids, n_prompt = data.encode_example(tokenizer, "Describe the frog.", "kind warm", 64)
    assert ids[0] == bos and ids[1:n_prompt] != [] and ids.count(bos) == 1
    batch = data.sft_batch(tokenizer, [{"prompt": "Describe the frog.", "completion": "kind"}], 64)
    assert batch["labels"][0, 0] == -100  # no loss on the BOS
    assert data.lm_example(tokenizer, "The old man walked.", 64)[0] == bos

    # Llama has no residual dropout: a residual_dropout setting is said to do nothing.
    with pytest.warns(UserWarning, match="matches no residual dropout setting of LlamaConfig"):
        train_sft(
            str(path),
            synthetic.demonstrations(8),
            tmp_path / "sft",
            config=SFT_CONFIG.replace(epochs=1, residual_dropout=0.2),
        )


def test_defaults_follow_the_model(tiny: Path, sft_run: Run, tmp_path: Path) -> None:
    plain = save_plain_hf_model(tmp_path / "plain")
    assert SFTConfig.for_model(str(plain)) == SFTConfig()  # a real checkpoint: the method's
    assert SFTConfig.for_model("tiny").lr != SFTConfig().lr  # the preset: its own
    assert SFTConfig.for_model(str(tiny)) == SFTConfig.for_model("tiny")
    # ... and every checkpoint trained from it, for the next steps; explicit settings win
    assert PPOConfig.for_model(str(sft_run.path)) == PPOConfig.for_model("tiny")
    assert PPOConfig.for_model(str(sft_run.path), {"lr": "2e-4"}).lr == 2e-4
