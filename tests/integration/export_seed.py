"""The labeled data set the export tests read, with what each export should contain.

Rankings cover K = 4..9 with and without ties, two labelers on one prompt, a held-out
labeler, all three splits, a skipped task, and labels on prompts that are not accepted.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.db import get_sessionmaker, utcnow
from tests.integration.export_data import (
    Expected,
    add_demonstration,
    add_prompt,
    add_ranking,
    add_skipped_ranking_task,
)

# (prompt key, labeler key, K, tie groups of completion indices, best first)
RANKINGS: list[tuple[str, str, list[list[int]]]] = [
    ("train-a", "l1", [[0], [1], [2], [3]]),  # K=4, strict
    ("train-b", "l1", [[0, 1], [2], [3, 4]]),  # K=5, two ties
    ("val-a", "l1", [[0], [1, 2, 3], [4], [5]]),  # K=6, a three-way tie
    ("val-b", "l2", [[0, 1, 2, 3, 4, 5, 6]]),  # K=7, all tied: no pair
    ("test-a", "l1", [[0], [1], [2], [3], [4], [5], [6], [7]]),  # K=8
    ("test-b", "l2", [[0], [1], [2, 3], [4], [5], [6], [7], [8]]),  # K=9
    ("train-a", "l2", [[3], [2], [1], [0]]),  # a second labeler on the same prompt
    ("train-own", "l1", [[1], [0], [2], [3]]),  # a labeler-written prompt
    ("train-b", "held", [[0], [1], [2], [3]]),  # held-out labeler
    ("val-a", "held", [[1], [0, 2], [3]]),  # held-out labeler, K=4 with a tie
]
# rankings submitted ten days ago (for since/until)
OLD = {("test-a", "l1"), ("val-b", "l2")}


def seed_labeled_data(researcher: Any, make_user: Any, api_as: Any) -> Expected:
    exp = Expected()
    labelers = {
        "l1": make_user("labeler"),
        "l2": make_user("labeler"),
        "held": make_user("labeler", held_out=True),
    }
    ids = {key: user.id for key, user in labelers.items()}
    exp.held_out_labelers = {ids["held"]}
    exp.cutoff = utcnow() - timedelta(days=1)
    with get_sessionmaker()() as s:
        prompts = {}
        for split in ("train", "val", "test"):
            for suffix, use_case in (("a", "Generation"), ("b", "Open QA")):
                p = add_prompt(
                    s,
                    f"Explain {split} topic {suffix}",
                    split=split,
                    use_case=use_case,
                    user_id=f"customer-{split}",
                )
                prompts[f"{split}-{suffix}"] = p
                exp.api_prompts.add(p.id)
        prompts["train-own"] = add_prompt(
            s,
            "Brainstorm names for a cat",
            split="train",
            source="labeler",
            use_case="Brainstorming",
            user_id=f"labeler:{ids['l2']}",
            author_id=ids["l2"],
        )
        held_prompt = add_prompt(
            s,
            "A held-out labeler's prompt",
            split="val",
            source="labeler",
            use_case="Chat",
            user_id=f"labeler:{ids['held']}",
            author_id=ids["held"],
        )
        exp.held_out_authored.add(held_prompt.id)
        for p in [*prompts.values(), held_prompt]:
            exp.prompt_split[p.id] = p.split or ""

        for prompt_key, labeler_key, groups in RANKINGS:
            prompt = prompts[prompt_key]
            k = sum(len(g) for g in groups)
            texts = [f"{prompt_key} by {labeler_key}: answer {i} of {k}" for i in range(k)]
            old = (prompt_key, labeler_key) in OLD
            ranking = add_ranking(
                s,
                prompt,
                ids[labeler_key],
                texts,
                groups,
                likert={0: 6, 1: 3},
                flags={k - 1: ["hallucination", "fails_to_follow"]},
                created_at=utcnow() - timedelta(days=10) if old else None,
            )
            exp.rankings[ranking.id] = (
                prompt.id,
                prompt.split or "",
                ids[labeler_key],
                [[texts[i] for i in g] for g in groups],
            )
            if labeler_key == "held":
                exp.held_out_rankings.add(ranking.id)
            if old:
                exp.old_rankings.add(ranking.id)

        skipped = add_skipped_ranking_task(s, prompts["train-a"], ids["l1"], 5)
        exp.skipped_texts = {f"skip {i}" for i in range(5)}
        assert skipped.id

        for prompt_key, labeler_key in (
            ("train-a", "l1"),
            ("train-b", "l2"),
            ("val-a", "l1"),
            ("test-b", "l1"),
            ("train-own", "l1"),
            ("val-b", "held"),
        ):
            prompt = prompts[prompt_key]
            text = f"A demonstration for {prompt_key} by {labeler_key}"
            add_demonstration(s, prompt, ids[labeler_key], text)
            exp.demonstrations[text] = (
                prompt.id,
                prompt.split or "",
                ids[labeler_key],
                labeler_key == "held",
            )

        # labels on prompts that are not accepted never reach an export
        for status in ("duplicate", "over_cap", "pii_dropped"):
            bad = add_prompt(s, f"A {status} prompt", split="train", status=status)
            exp.unusable_prompts.add(bad.id)
            add_ranking(
                s, bad, ids["l1"], [f"{status} answer {i}" for i in range(4)], [[0], [1], [2], [3]]
            )
            add_demonstration(s, bad, ids["l1"], f"{status} demonstration")
            exp.skipped_texts |= {f"{status} answer 0", f"{status} demonstration"}
        s.commit()
    return exp
