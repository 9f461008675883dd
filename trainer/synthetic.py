"""Synthetic feedback data with a hidden preference rule, for tests, benchmarks and demos.

Completions are short lists of words; the hidden rule scores a completion by its number of
positive words minus its number of negative words. Rankings order K completions by that
score (ties share a rank), so a reward model can learn the rule and a policy can be pushed
toward it."""

from __future__ import annotations

import random

POSITIVE = ["kind", "bright", "happy", "warm", "helpful", "clear", "good", "best"]
NEGATIVE = ["sad", "dull", "cold", "angry", "useless", "rude", "wrong", "bad"]
TOPICS = [
    "frog",
    "river",
    "moon",
    "city",
    "park",
    "robot",
    "ocean",
    "coffee",
    "book",
    "party",
    "spider",
    "sky",
    "story",
    "poem",
    "morning",
    "team",
    "village",
    "storm",
    "fox",
    "dog",
]


def hidden_score(text: str) -> int:
    words = text.split()
    return sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)


def make_prompt(rng: random.Random) -> str:
    return f"Describe the {rng.choice(TOPICS)}."


def make_completion(rng: random.Random, p_positive: float = 0.5) -> str:
    n = rng.randint(4, 8)
    return " ".join(
        rng.choice(POSITIVE if rng.random() < p_positive else NEGATIVE) for _ in range(n)
    )


def demonstrations(n: int, seed: int = 0, p_positive: float = 0.5) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {"prompt": make_prompt(rng), "completion": make_completion(rng, p_positive)}
        for _ in range(n)
    ]


def rankings(n: int, seed: int = 0, ks: tuple[int, ...] = (4, 5, 6, 7, 8, 9)) -> list[dict]:
    """n rankings, K drawn from `ks` per prompt; rank 1 = highest hidden score, ties share."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        texts = [make_completion(rng, rng.random()) for _ in range(rng.choice(ks))]
        distinct = sorted({hidden_score(t) for t in texts}, reverse=True)
        out.append(
            {
                "prompt": make_prompt(rng),
                "completions": [
                    {"text": t, "rank": distinct.index(hidden_score(t)) + 1} for t in texts
                ],
            }
        )
    return out


def prompts(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"prompt": make_prompt(rng)} for _ in range(n)]


def pretrain_texts(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Plain sentences unlike the feedback data, standing in for a pre-training corpus."""
    rng = random.Random(seed)
    subjects = ["The old man", "A small child", "The teacher", "My neighbour", "The captain"]
    verbs = ["walked to", "looked at", "painted", "wrote about", "visited"]
    objects = ["the market", "a tall tree", "the harbour", "an empty house", "the mountain"]
    times = ["in the morning.", "after the rain.", "every Sunday.", "at night.", "in spring."]
    return [
        {"text": " ".join(rng.choice(part) for part in (subjects, verbs, objects, times))}
        for _ in range(n)
    ]
