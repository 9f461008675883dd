"""The evaluation's KL view: log pi(y|x) - log pi_ref(y|x) over an output's tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import Run
from trainer.config import SampleConfig
from trainer.data import encode_example
from trainer.models import load_policy
from trainer.score import kl_to_reference, sequence_logprobs

RECORDS = [
    {"prompt": "Describe the frog.", "completion": "kind bright happy"},
    {"prompt": "Describe the moon over the quiet sea tonight.", "completion": "sad"},
]
CONFIG = SampleConfig(max_length=64, batch_size=2)


def test_a_policy_is_at_zero_kl_from_itself(tiny: Path) -> None:
    assert kl_to_reference(str(tiny), str(tiny), RECORDS, CONFIG) == pytest.approx([0, 0], abs=1e-5)


def test_sequence_logprobs_sum_the_completion_tokens_only(tiny: Path) -> None:
    """Batched and padded, the sum equals a one-by-one computation over the completion."""
    model, tokenizer = load_policy(str(tiny), trainable=False)
    pairs = [(r["prompt"], r["completion"]) for r in RECORDS]
    batched = sequence_logprobs(model, tokenizer, pairs, batch_size=2, max_length=64)
    for (prompt, completion), got in zip(pairs, batched, strict=True):
        ids, n_prompt = encode_example(tokenizer, prompt, completion, 64)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        logprobs = torch.log_softmax(logits, -1)
        expected = sum(logprobs[t - 1, ids[t]].item() for t in range(n_prompt, len(ids)))
        assert got == pytest.approx(expected, abs=1e-4)


def test_a_fine_tuned_policy_moved_away_from_its_base(sft_run: Run, tiny: Path) -> None:
    kls = kl_to_reference(str(sft_run.path), str(tiny), RECORDS, CONFIG)
    # the SFT model learned these words: its outputs are more likely under it than under tiny
    assert kls[0] > 0
