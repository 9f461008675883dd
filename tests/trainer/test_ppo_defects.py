"""The PPO defects that changed what it learns, each with the number that was wrong before:
the value model off by the RM bias, the RM scoring re-tokenised text, and the checkpoint's
generation_config leaking into rollouts; and the policy and value gradients clipped apart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification, GenerationConfig

from tests.trainer.conftest import Run
from trainer import synthetic
from trainer.callbacks import Progress
from trainer.config import PPOConfig
from trainer.data import encode_example, encode_prompt
from trainer.models import load_policy, load_reward_model, sequence_scores, write_prefloop_meta
from trainer.ppo import gae, train_ppo
from trainer.sample import decode_responses, ends_with_eos, generate
from trainer.score import response_scores, score_pairs

ONE_ITERATION = PPOConfig(
    iterations=1,
    rollout_batch_size=16,
    minibatch_size=8,
    ppo_epochs=1,
    lr=1e-3,
    value_lr=1e-3,
    max_new_tokens=8,
    max_length=64,
)


def first_iteration(policy: Path, rm: Path, out: Path, config: PPOConfig) -> dict[str, float]:
    seen: list[Progress] = []
    train_ppo(str(policy), str(rm), synthetic.prompts(32, seed=8), out, config=config,
              progress=seen.append)  # fmt: skip
    return next(p.metrics for p in seen if p.step == 1)


def constant_reward_model(tiny: Path, out: Path, c: float) -> Path:
    """An RM that scores everything c (layer norm to a constant, head reading it), saved with
    reward_bias = c: every normalised reward is 0."""
    _, tokenizer, _ = load_reward_model(str(tiny))
    model = AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=1)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.score.weight.zero_()
        model.score.weight[0, 0] = c
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_prefloop_meta(out, {"kind": "rm", "reward_bias": c, "parents": [str(tiny)]})
    return out


def test_values_start_centred_like_the_rewards(tiny: Path, sft_run: Run, tmp_path: Path) -> None:
    c = 3.0
    # The defect's arithmetic: rewards that are all 0, values left at the RM's raw c.
    mask = torch.ones(1, 8)
    wrong, _ = gae(torch.zeros(1, 8), torch.full((1, 8), c), mask, 1.0, 0.95)
    assert wrong.max().item() == pytest.approx(-c * 0.95**7)  # -2.09 at the first token
    assert wrong.min().item() == pytest.approx(-c)  # -3.0 at EOS

    rm = constant_reward_model(tiny, tmp_path / "rm", c)
    metrics = first_iteration(sft_run.path, rm, tmp_path / "ppo", ONE_ITERATION)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == SFT: rewards all 0
    assert metrics["reward"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["value_mean"] == pytest.approx(0.0, abs=1e-5)  # was 3.0
    assert metrics["advantage_mean"] == pytest.approx(0.0, abs=1e-5)  # was -2.6 on average


def test_the_rm_scores_the_policys_own_tokens(sft_run: Run, rm_run: Run) -> None:
    policy, tokenizer = load_policy(str(sft_run.path), trainable=False)
    rm, rm_tokenizer, _ = load_reward_model(str(rm_run.path))
    prompts = [p["prompt"] for p in synthetic.prompts(64, seed=5)]
    prompt_ids = [encode_prompt(tokenizer, p, 48) for p in prompts]
    sequences, attention_mask, response_mask = generate(
        policy, tokenizer, prompt_ids, 8, seeds=list(range(64))
    )
    width = sequences.shape[1] - response_mask.shape[1]
    ours = response_scores(rm, sequences, attention_mask, response_mask)

    # Each prompt + response alone, as the RM was trained, read at its last token.
    responses = [
        row[m.bool()].tolist() for row, m in zip(sequences[:, width:], response_mask, strict=True)
    ]
    direct = torch.stack(
        [
            sequence_scores(rm, torch.tensor([p + r]), torch.ones(1, len(p + r), dtype=torch.long))[
                0
            ]
            for p, r in zip(prompt_ids, responses, strict=True)
        ]
    )
    assert torch.allclose(ours, direct, atol=1e-4)

    # What reached the RM before: the decoded text encoded again, with an EOS appended.
    texts = decode_responses(tokenizer, sequences[:, width:], response_mask)
    retokenised = [
        encode_example(tokenizer, p, t, 64)[0] != ids + r
        for p, t, ids, r in zip(prompts, texts, prompt_ids, responses, strict=True)
    ]
    cut = ~ends_with_eos(sequences[:, width:], response_mask, tokenizer.eos_token_id)
    assert sum(retokenised) >= int(cut.sum()) > 0  # each cut response got an EOS it never made
    old = torch.tensor(score_pairs(rm, rm_tokenizer, list(zip(prompts, texts, strict=True))))
    assert (old - direct).abs()[cut].max() > 0.01  # and so another score


def test_missing_eos_penalty_lowers_the_score_of_cut_responses(
    sft_run: Run, rm_run: Run, tmp_path: Path
) -> None:
    short = ONE_ITERATION.replace(max_new_tokens=4)  # most responses are cut
    plain = first_iteration(sft_run.path, rm_run.path, tmp_path / "a", short)
    penalised = first_iteration(
        sft_run.path, rm_run.path, tmp_path / "b", short.replace(missing_eos_penalty=2.0)
    )
    assert 0 < plain["truncated_share"] == penalised["truncated_share"]  # the same rollout
    assert penalised["reward"] == pytest.approx(
        plain["reward"] - 2.0 * plain["truncated_share"], abs=1e-4
    )


def test_ppo_updates_with_dropout_off(sft_run: Run, rm_run: Run, tmp_path: Path) -> None:
    """The SFT checkpoint keeps GPT-2's dropout rates; PPO trains with dropout off, so in the
    first update pi_new / pi_old is 1 (with dropout on in the update: approx_kl 0.011)."""
    assert AutoConfig.from_pretrained(sft_run.path).resid_pdrop > 0
    one_update = ONE_ITERATION.replace(minibatch_size=ONE_ITERATION.rollout_batch_size)
    metrics = first_iteration(sft_run.path, rm_run.path, tmp_path / "ppo", one_update)
    assert metrics["approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["clip_fraction"] == 0.0


def test_the_value_loss_does_not_shrink_the_policy_step(
    sft_run: Run, rm_run: Run, tmp_path: Path
) -> None:
    """The policy and the value model are clipped each on its own: a value loss 10^4 times
    larger leaves the policy's update unchanged (one clip over both scaled it down)."""
    policies, metrics = [], []
    for vf_coef in (0.1, 1000.0):
        out = tmp_path / f"vf-{vf_coef}"
        config = ONE_ITERATION.replace(vf_coef=vf_coef, max_grad_norm=0.5)
        metrics.append(first_iteration(sft_run.path, rm_run.path, out, config))
        policies.append(load_file(out / "model.safetensors"))
    assert metrics[1]["value_grad_norm"] > 100 * metrics[0]["value_grad_norm"]  # clipped to 0.5
    assert metrics[0]["policy_grad_norm"] == metrics[1]["policy_grad_norm"]
    sft = load_file(sft_run.path / "model.safetensors")
    assert any(not torch.equal(policies[0][n], sft[n]) for n in policies[0])  # it moved
    assert policies[0].keys() == policies[1].keys()
    for name in policies[0]:
        assert torch.equal(policies[0][name], policies[1][name]), name


def test_the_checkpoints_generation_config_does_not_change_rollouts(
    sft_run: Run, tmp_path: Path
) -> None:
    leaky = Path(shutil.copytree(sft_run.path, tmp_path / "leaky"))
    settings = GenerationConfig.from_pretrained(leaky)
    settings.min_new_tokens = 10  # EOS forbidden before 10 tokens ...
    settings.repetition_penalty = 3.0  # ... and other tokens than the policy's
    settings.no_repeat_ngram_size = 1
    settings.save_pretrained(leaky)
    rollouts = {}
    for name, path in (("clean", sft_run.path), ("leaky", leaky)):
        model, tokenizer = load_policy(str(path), trainable=False)
        ids = [encode_prompt(tokenizer, p["prompt"], 48) for p in synthetic.prompts(32, seed=3)]
        rollouts[name] = generate(model, tokenizer, ids, 10, seeds=list(range(32)))
    assert torch.equal(rollouts["clean"][0], rollouts["leaky"][0])
    sequences, _, response_mask = rollouts["leaky"]
    finished = ends_with_eos(
        sequences[:, -response_mask.shape[1] :], response_mask, tokenizer.eos_token_id
    )
    assert finished.sum() > 0  # with min_new_tokens = 10 leaking in, 0 of 32 finished


def test_ppo_refuses_settings_that_sample_another_distribution() -> None:
    with pytest.raises(ValueError, match="temperature"):
        PPOConfig(temperature=0)  # was a NaN loss
    with pytest.raises(ValueError, match="top_p"):
        PPOConfig(top_p=0.9)
