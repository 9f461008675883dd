"""Checkpoints reload with from_pretrained; any local HF model loads through the path code
path; progress callbacks see every step and can cancel without leaving a final checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from tests.trainer.conftest import SFT_CONFIG, Run
from trainer import synthetic
from trainer.callbacks import Progress, read_metrics
from trainer.config import SampleConfig
from trainer.models import (
    build_tiny,
    load_policy,
    load_reward_model,
    read_prefloop_meta,
    resolve_model,
    sequence_scores,
)
from trainer.sample import sample_completions
from trainer.score import score_pairs
from trainer.sft import train_sft


def test_sft_and_rm_checkpoints_reload_with_from_pretrained(
    tiny: Path, sft_run: Run, rm_run: Run
) -> None:
    policy = AutoModelForCausalLM.from_pretrained(sft_run.path)
    assert AutoTokenizer.from_pretrained(sft_run.path).pad_token == "<|pad|>"
    # the training-time dropout is a hyper-parameter, not the model's: the base's is kept
    assert (
        policy.config.resid_pdrop == AutoModelForCausalLM.from_pretrained(tiny).config.resid_pdrop
    )
    meta = read_prefloop_meta(sft_run.path)
    assert meta["kind"] == "sft" and meta["data_snapshot"] == "synthetic-demos"
    assert meta["hyperparameters"]["residual_dropout"] == SFT_CONFIG.residual_dropout
    assert meta["preset"] == "tiny"  # so later steps get the tiny preset's defaults
    assert meta["hyperparameters"]["epochs"] == SFT_CONFIG.epochs
    assert meta["metrics"]["val_loss"] == pytest.approx(sft_run.metrics["val_loss"])

    rm = AutoModelForSequenceClassification.from_pretrained(rm_run.path).eval()
    assert rm.config.num_labels == 1
    for name in ("resid_pdrop", "attn_pdrop", "embd_pdrop"):  # trained at 0 (disable_dropout)
        assert getattr(rm.config, name) == getattr(policy.config, name) > 0, name  # saved: SFT's
    ours, tokenizer, bias = load_reward_model(str(rm_run.path))
    ids = tokenizer(["### Instruction:\nhi\n\n### Response:\nkind good"], return_tensors="pt")
    with torch.no_grad():  # the trained head came back, not a fresh one
        assert rm(**ids).logits.item() == pytest.approx(
            sequence_scores(ours, ids["input_ids"], ids["attention_mask"]).item(), abs=1e-6
        )
    meta = read_prefloop_meta(rm_run.path)
    assert meta["kind"] == "rm" and meta["parents"] == [str(sft_run.path)]
    assert meta["reward_bias"] == bias != 0.0


def test_ppo_checkpoint_reloads_with_from_pretrained(
    sft_run: Run, rm_run: Run, tmp_path: Path
) -> None:
    from tests.trainer.test_learning import PPO_CONFIG
    from trainer.ppo import train_ppo

    out = tmp_path / "ppo"
    train_ppo(
        str(sft_run.path),
        str(rm_run.path),
        synthetic.prompts(16),
        out,
        config=PPO_CONFIG.replace(iterations=1, rollout_batch_size=8),
    )
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, GPT2LMHeadModel)
    meta = read_prefloop_meta(out)
    assert meta["kind"] == "ppo"
    assert meta["parents"] == [str(sft_run.path), str(rm_run.path)]
    assert meta["hyperparameters"]["kl_coef"] == 0.02


def test_build_tiny_is_cached_and_deterministic(tiny: Path, tmp_path: Path) -> None:
    assert resolve_model("tiny") == str(tiny)
    fresh = build_tiny(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (fresh / name).read_bytes() == (tiny / name).read_bytes()
    stamp = (fresh / "model.safetensors").stat().st_mtime_ns
    assert build_tiny(tmp_path / "again") == fresh  # reused, not rebuilt
    assert (fresh / "model.safetensors").stat().st_mtime_ns == stamp


def small_bpe(special_tokens: list[str]) -> Tokenizer:
    """A 300-token byte-level BPE trained on synthetic demonstrations."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        [d["prompt"] + " " + d["completion"] for d in synthetic.demonstrations(200)],
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=special_tokens,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    return tok


def save_plain_hf_model(path: Path) -> Path:
    """A GPT-2 saved with save_pretrained, tokenizer without a pad token (like hub GPT-2)."""
    tok = small_bpe(["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=32,
        n_layer=1,
        n_head=2,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_local_hf_model_loads_through_the_path_code_path(tmp_path: Path) -> None:
    path = save_plain_hf_model(tmp_path / "plain-gpt2")
    assert resolve_model(str(path)) == str(path)
    assert resolve_model("some-org/some-model") == "some-org/some-model"  # hub IDs pass through
    model, tokenizer = load_policy(str(path))
    assert tokenizer.pad_token == tokenizer.eos_token  # no pad token: EOS stands in
    assert not read_prefloop_meta(path)

    out = tmp_path / "sft"
    metrics = train_sft(
        str(path),
        synthetic.demonstrations(32),
        out,
        config=SFT_CONFIG.replace(epochs=1, residual_dropout=0.3),
    )
    assert metrics["steps"] == 2
    # trained with 0.3; saved with the base's own 0.1 (it was saved as 0.3)
    assert AutoModelForCausalLM.from_pretrained(out).config.resid_pdrop == 0.1
    assert read_prefloop_meta(out)["preset"] is None  # a plain model: the method's defaults
    records = sample_completions(
        str(out), ["Describe the frog."], 3, SampleConfig(max_new_tokens=6, max_length=64)
    )
    assert [r["model"] for r in records] == [str(out)] * 3
    rm, rm_tokenizer, bias = load_reward_model(str(path))  # head on a plain causal LM
    scores = score_pairs(rm, rm_tokenizer, [(r["prompt"], r["completion"]) for r in records])
    assert bias == 0.0 and len(scores) == 3


class JobCancelled(Exception):
    pass


def test_progress_every_step_and_cancellation_leaves_no_final_checkpoint(
    tiny: Path, tmp_path: Path
) -> None:
    seen: list[Progress] = []
    train_sft(
        str(tiny),
        synthetic.demonstrations(64),
        tmp_path / "ok",
        config=SFT_CONFIG.replace(epochs=2),
        progress=seen.append,
    )
    steps = [p.step for p in seen if "loss" in p.metrics]
    assert steps == list(range(1, 9)) and all(p.total == 8 for p in seen)

    def cancel_in_epoch_2(p: Progress) -> None:  # after epoch 1 saved its candidate
        if p.step == 6:
            assert (out / ".candidate" / "model.safetensors").exists()
            raise JobCancelled

    out = tmp_path / "cancelled"
    with pytest.raises(JobCancelled):
        train_sft(
            str(tiny),
            synthetic.demonstrations(64),
            out,
            val=synthetic.demonstrations(8),
            config=SFT_CONFIG.replace(epochs=2),
            progress=cancel_in_epoch_2,
        )
    assert not (out / "prefloop.json").exists()
    assert not (out / "model.safetensors").exists()
    assert not (out / ".candidate").exists()
    assert len(read_metrics(out)) >= 5  # the steps before the cancel were logged

    out = tmp_path / "ok"  # a cancelled re-run over a finished checkpoint unmarks it
    assert (out / "prefloop.json").exists()
    with pytest.raises(JobCancelled):
        train_sft(
            str(tiny),
            synthetic.demonstrations(64),
            out,
            val=synthetic.demonstrations(8),
            config=SFT_CONFIG.replace(epochs=2),
            progress=cancel_in_epoch_2,
        )
    assert not (out / "prefloop.json").exists()


def test_lora_checkpoint_is_merged_into_a_plain_model(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "lora"
    train_sft(
        str(tiny),
        synthetic.demonstrations(32),
        out,
        config=SFT_CONFIG.replace(epochs=1, use_lora=True, lr=1e-2),
    )
    assert not (out / "adapter_config.json").exists()
    tuned: Any = AutoModelForCausalLM.from_pretrained(out)  # a GPT-2: .transformer.h ...
    base: Any = AutoModelForCausalLM.from_pretrained(tiny)
    w_tuned = tuned.transformer.h[0].attn.c_attn.weight
    w_base = base.transformer.h[0].attn.c_attn.weight
    assert not torch.allclose(w_tuned, w_base)  # the adapters were merged in
    assert torch.equal(tuned.transformer.wte.weight, base.transformer.wte.weight)  # rest frozen
