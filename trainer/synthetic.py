"""Synthetic feedback data with a hidden preference rule, for tests, benchmarks and demos.

Completions are short lists of words; the hidden rule scores a completion by its number of
positive words minus its number of negative words. Rankings order K completions by that
score (ties share a rank), so a reward model can learn the rule and a policy can be pushed
toward it."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import Any

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


def rankings(
    n: int, seed: int = 0, ks: tuple[int, ...] = (4, 5, 6, 7, 8, 9)
) -> list[dict[str, Any]]:
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


# ---------------------------------------------------------------- the efficacy loop
# A family of "true" preferences over (prompt, completion), and a whole loop's data set in
# which the true preference is seen only through noisy rankings (benchmarks/loop_efficacy.py).

FILLER = ["the", "and", "very", "a", "so", "it", "is", "was"]


def _words(text: str) -> list[str]:
    return text.replace(".", " ").replace(",", " ").split()


def _topic(prompt: str) -> str:
    words = _words(prompt)
    return words[-1] if words else ""


RULES: dict[str, Callable[[str, str], float]] = {
    # more positive than negative words (the tests' hidden rule)
    "valence": lambda prompt, text: float(hidden_score(text)),
    # the share of positive words, whatever the length
    "positive_share": lambda prompt, text: (
        sum(w in POSITIVE for w in _words(text)) / max(1, len(_words(text)))
    ),
    # say it in few words
    "brevity": lambda prompt, text: -float(len(_words(text))),
    # stay on the prompt's topic: mentions of its topic word, minus other topics
    "on_topic": lambda prompt, text: float(
        sum(w == _topic(prompt) for w in _words(text))
        - sum(w in TOPICS and w != _topic(prompt) for w in _words(text))
    ),
    # avoid negative words (positives do not count)
    "no_negatives": lambda prompt, text: -float(sum(w in NEGATIVE for w in _words(text))),
}


def mixed_completion(rng: random.Random, prompt: str) -> str:
    """2..10 words mixing positive, negative, filler and topic words (the prompt's own or
    another), with proportions drawn per completion so that every rule above varies."""
    weights = [rng.random() for _ in range(4)]
    own, other = _topic(prompt), rng.choice(TOPICS)
    words = []
    for _ in range(rng.randint(2, 10)):
        pool = rng.choices([POSITIVE, NEGATIVE, FILLER, [own, own, other]], weights=weights, k=1)[0]
        words.append(rng.choice(pool))
    return " ".join(words)


def thurstone_scale(gaps: list[float], agreement: float) -> float:
    """The noise sigma for which ranking by score + N(0, sigma^2) orders a pair with true-score
    gap d like the truth with probability Phi(|d| / (sigma sqrt 2)), `agreement` on average
    over `gaps` (the non-zero gaps of all pairs). Found by bisection."""
    if agreement >= 1.0:
        return 0.0

    def mean_agreement(sigma: float) -> float:
        return sum(0.5 * (1 + math.erf(abs(d) / (2 * sigma))) for d in gaps) / len(gaps)

    lo, hi = 1e-6, 1e6
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if mean_agreement(mid) > agreement else (lo, mid)
    return math.sqrt(lo * hi)


def noisy_rankings(
    n: int,
    rule: str,
    agreement: float,
    seed: int = 0,
    ks: tuple[int, ...] = (4, 5, 6, 7, 8, 9),
) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """n K-way rankings of mixed completions, ordered by the true score plus Gaussian noise
    scaled so that a labeled pair agrees with the true preference with probability
    `agreement` on average (pairs tied under the truth are ordered at random). Returns the
    rankings (rank 1 = best, no ties) and each ranking's true scores."""
    rng = random.Random(seed)
    score = RULES[rule]
    items = []
    for _ in range(n):
        prompt = make_prompt(rng)
        texts = [mixed_completion(rng, prompt) for _ in range(rng.choice(ks))]
        items.append((prompt, texts, [score(prompt, t) for t in texts]))
    gaps = [a - b for _, _, s in items for a, b in itertools.combinations(s, 2) if a != b]
    sigma = thurstone_scale(gaps, agreement) if gaps else 0.0
    rows, truth = [], []
    for prompt, texts, scores in items:
        noisy = [s + rng.gauss(0.0, sigma) + 1e-9 * rng.random() for s in scores]
        order = sorted(range(len(texts)), key=lambda i: -noisy[i])
        ranks = [0] * len(texts)
        for position, i in enumerate(order, 1):
            ranks[i] = position
        rows.append(
            {
                "prompt": prompt,
                "completions": [{"text": t, "rank": r} for t, r in zip(texts, ranks, strict=True)],
            }
        )
        truth.append(scores)
    return rows, truth


def label_agreement(rows: list[dict[str, Any]], truth: list[list[float]]) -> dict[str, float]:
    """How the labels relate to the truth: the share of labeled pairs ordered like the true
    preference (truth-tied pairs excluded), and the noise ceiling, the pairwise accuracy that
    the true preference itself reaches on these labels (truth-tied pairs count 1/2)."""
    agree = untied = ceiling = pairs = 0.0
    for row, scores in zip(rows, truth, strict=True):
        ranks = [c["rank"] for c in row["completions"]]
        for i, j in itertools.permutations(range(len(ranks)), 2):
            if ranks[i] < ranks[j]:  # labeled: i better than j
                pairs += 1
                if scores[i] != scores[j]:
                    untied += 1
                    agree += scores[i] > scores[j]
                ceiling += 1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0
    return {"agreement": agree / max(untied, 1), "ceiling": ceiling / max(pairs, 1)}


def mixed_demonstrations(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Demonstrations of the same mixed style, neutral to every rule (labelers who write
    without knowing the preference): what SFT imitates and PPO then improves on."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = make_prompt(rng)
        out.append({"prompt": prompt, "completion": mixed_completion(rng, prompt)})
    return out
