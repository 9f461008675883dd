"""How a simulated labeler fills a task: rank outputs (with Likert scores and flags) or write a
demonstration. Three behaviours:

- `PreferenceFollowing`: orders the outputs by a preference function seen through noise, with
  the noise tuned so that two such labelers agree on a requested share of output pairs;
- `RandomRanker`: a careless labeler (uniformly random order and scores);
- `FirstShownBest`: a lazy labeler who submits the outputs in the order shown.

**Noise model** (Thurstone's case V on ranks). Within a task the outputs' preference scores
are turned into ranks r (1 = worst; equal scores share their average rank), so only the order
the preference function gives matters, never its scale. The labeler perceives
``r_i + sigma * N(0, 1)`` and orders by that. For two outputs whose ranks differ by d, one
labeler orders them as the preference does with probability ``p = Phi(d / (sigma * sqrt 2))``,
and two independent labelers agree on the pair with probability ``p^2 + (1 - p)^2``. Sigma is
solved per task (scipy's brentq) so that the mean of that over the task's pairs equals the
requested agreement: the expected pairwise agreement between two simulated labelers is the
target on every task. Identical texts are tied (by both labelers: such pairs are not counted,
as in docs/quality.md's agreement); outputs with equal scores but different texts are ordered
at random (agreement 1/2 on those pairs), so a preference with many ties caps the agreement
that can be reached (then sigma is 0).
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from scipy.optimize import brentq
from scipy.special import ndtr
from scipy.stats import rankdata

from app.simulation.preferences import (
    NEGATIVE,
    POSITIVE,
    Preference,
    content_words,
)

Task = dict[str, Any]
Body = dict[str, Any]

MIN_AGREEMENT = 0.5  # two labelers who both answer at random agree on half the pairs


class PreferenceError(ValueError):
    """The preference function raised or returned something that is not a finite number."""


def score_of(preference: Preference, prompt: str, text: str) -> tuple[float, list[str]]:
    """The preference's (score, flags) for one output, checked."""
    name = getattr(preference, "__name__", repr(preference))
    try:
        result = preference(prompt, text)
    except Exception as exc:
        raise PreferenceError(f"preference {name} raised {type(exc).__name__}: {exc}") from exc
    flags: list[str] = []
    if isinstance(result, tuple):
        if len(result) != 2:
            raise PreferenceError(
                f"preference {name} returned a tuple of {len(result)}; use (score, flags)"
            )
        result, raw_flags = result
        if isinstance(raw_flags, str) or not isinstance(raw_flags, Iterable):
            raise PreferenceError(f"preference {name}: flags must be a list of flag names")
        flags = [str(f) for f in raw_flags]
    try:
        score = float(result)
    except (TypeError, ValueError):
        raise PreferenceError(
            f"preference {name} returned {result!r}; it must return a number"
        ) from None
    if not math.isfinite(score):
        raise PreferenceError(f"preference {name} returned {score}; it must be finite")
    return score, flags


# calibration ------------------------------------------------------------------------------------


def expected_agreement(sigma: float, rank_gaps: Sequence[float], equal_pairs: int) -> float:
    """Expected share of pairs two labelers with noise ``sigma`` order alike: pairs with rank
    gap d agree with probability p^2 + (1-p)^2, p = Phi(d / (sigma sqrt 2)); pairs of equal
    score (``equal_pairs``) with probability 1/2."""
    total = len(rank_gaps) + equal_pairs
    if total == 0:
        return 1.0
    if sigma == 0:
        return (len(rank_gaps) + 0.5 * equal_pairs) / total
    agree = 0.5 * equal_pairs
    for gap in rank_gaps:
        p = float(ndtr(gap / (sigma * math.sqrt(2))))
        agree += p * p + (1 - p) * (1 - p)
    return agree / total


def noise_for(scores: Sequence[float], agreement: float) -> float:
    """The sigma (in rank units) at which two labelers agree on ``agreement`` of the pairs of
    outputs with these preference scores (0 when even no noise cannot reach it; inf at 1/2)."""
    ranks = rankdata(scores, method="average")
    gaps = [abs(a - b) for i, a in enumerate(ranks) for b in ranks[i + 1 :] if a != b]
    equal = sum(1 for i, a in enumerate(ranks) for b in ranks[i + 1 :] if a == b)
    # no pair the noise could change (one output, or all scored alike): nothing to tune
    if not gaps or agreement >= expected_agreement(0.0, gaps, equal):
        return 0.0
    if agreement <= MIN_AGREEMENT:
        return math.inf
    high = 1.0
    while expected_agreement(high, gaps, equal) > agreement:
        high *= 2
    return float(brentq(lambda s: expected_agreement(s, gaps, equal) - agreement, 1e-9, high))


# behaviours -------------------------------------------------------------------------------------


def _likert_by_position(position: int, count: int) -> int:
    """6 for the best of ``count`` down to 2 for the worst (4 when alone)."""
    if count <= 1:
        return 4
    return round(6 - 4 * position / (count - 1))


def _ms(rng: random.Random, median_s: float) -> int:
    return int(rng.lognormvariate(math.log(median_s * 1000), 0.35))


class Behaviour(ABC):
    """What one simulated labeler does with a task from ``GET /api/v1/tasks/next``."""

    name: str = ""

    def submission(self, task: Task, rng: random.Random) -> Body:
        """The body for ``POST /api/v1/tasks/{id}/submission``."""
        if task["kind"] == "demonstration":
            return self.demonstrate(task, rng)
        return self.rank(task, rng)

    @abstractmethod
    def rank(self, task: Task, rng: random.Random) -> Body: ...

    @abstractmethod
    def demonstrate(self, task: Task, rng: random.Random) -> Body: ...


class PreferenceFollowing(Behaviour):
    """Ranks by ``preference`` through noise tuned to ``agreement`` (see the module's
    docstring); Likert 6 (best) down to 2 (worst) by the order given; ticks the flags the
    preference returns; writes the candidate demonstration the preference likes best."""

    name = "preference"

    def __init__(self, preference: Preference, agreement: float = 0.73) -> None:
        if not MIN_AGREEMENT <= agreement <= 1:
            raise ValueError(f"agreement must be between 0.5 and 1, got {agreement}")
        self.preference = preference
        self.agreement = agreement

    def rank(self, task: Task, rng: random.Random) -> Body:
        prompt = task["prompt"]["text"]
        shown = task["completions"]
        # identical texts are one output to a reader: one score, one perceived value, a tie
        by_text: dict[str, list[int]] = {}
        for c in shown:
            by_text.setdefault(c["text"], []).append(c["completion_id"])
        texts = list(by_text)
        scored = [score_of(self.preference, prompt, t) for t in texts]
        scores = [s for s, _ in scored]
        sigma = noise_for(scores, self.agreement)
        ranks = rankdata(scores, method="average")
        if math.isinf(sigma):
            perceived = [rng.gauss(0, 1) for _ in texts]
        else:
            # equal ranks with sigma 0: a random order between them
            perceived = [r + sigma * rng.gauss(0, 1) + 1e-9 * rng.random() for r in ranks]
        order = sorted(range(len(texts)), key=lambda i: perceived[i], reverse=True)
        ratings: dict[str, dict[str, Any]] = {}
        for position, i in enumerate(order):
            for cid in by_text[texts[i]]:
                ratings[str(cid)] = {
                    "likert": _likert_by_position(position, len(texts)),
                    "flags": sorted(set(scored[i][1])),
                }
        seconds = 20 + 8 * len(shown)
        return {
            "ranking": [by_text[texts[i]] for i in order],
            "ratings": ratings,
            "time_spent_ms": _ms(rng, seconds),
        }

    def demonstrate(self, task: Task, rng: random.Random) -> Body:
        prompt = task["prompt"]["text"]
        candidates = candidate_responses(prompt, rng)
        scores = [score_of(self.preference, prompt, c)[0] for c in candidates]
        best = max(scores)
        text = rng.choice([c for c, s in zip(candidates, scores, strict=True) if s == best])
        return {"text": text, "time_spent_ms": _ms(rng, 90)}


class RandomRanker(Behaviour):
    """A careless labeler: a uniformly random order, random 1-7 scores, a random candidate as
    demonstration."""

    name = "random"

    def rank(self, task: Task, rng: random.Random) -> Body:
        ids = [c["completion_id"] for c in task["completions"]]
        rng.shuffle(ids)
        return {
            "ranking": [[cid] for cid in ids],
            "ratings": {str(cid): {"likert": rng.randint(1, 7)} for cid in ids},
            "time_spent_ms": _ms(rng, 6),
        }

    def demonstrate(self, task: Task, rng: random.Random) -> Body:
        return {
            "text": rng.choice(candidate_responses(task["prompt"]["text"], rng)),
            "time_spent_ms": _ms(rng, 20),
        }


class FirstShownBest(Behaviour):
    """A lazy labeler: submits the outputs in the order shown (the first shown is "best"),
    scores them only where a score is required (all 4), and writes the first candidate."""

    name = "first"

    def rank(self, task: Task, rng: random.Random) -> Body:
        ids = [c["completion_id"] for c in task["completions"]]
        # an untouched order is refused unless confirmed: the lazy labeler ticks "the order
        # shown is my ranking" (docs/labeling.md)
        body: Body = {
            "ranking": [[cid] for cid in ids],
            "confirmed_order": True,
            "time_spent_ms": _ms(rng, 4),
        }
        if task.get("likert_required"):
            body["ratings"] = {str(cid): {"likert": 4} for cid in ids}
        return body

    def demonstrate(self, task: Task, rng: random.Random) -> Body:
        return {
            "text": candidate_responses(task["prompt"]["text"], rng)[0],
            "time_spent_ms": _ms(rng, 15),
        }


BEHAVIOURS = ("preference", "random", "first")


def make_behaviour(name: str, preference: Preference | None, agreement: float) -> Behaviour:
    if name == "preference":
        if preference is None:
            raise ValueError("the preference behaviour needs a preference function")
        return PreferenceFollowing(preference, agreement)
    if name == "random":
        return RandomRanker()
    if name == "first":
        return FirstShownBest()
    raise ValueError(f"unknown behaviour {name!r}; choose from {', '.join(BEHAVIOURS)}")


# demonstrations ---------------------------------------------------------------------------------

_OPENERS = ["", "Sure. ", "Happy to help. ", "Thank you for asking. ", "Here is an answer. "]
_NEUTRAL = ["simple", "common", "plain", "short", "practical", "usual"]
_SENTENCES = [
    "{W} is {adj} to think about.",
    "A {adj} way to approach {w} is to start with the basics.",
    "Most people find {w} {adj} and {adj2}.",
    "In short, {w} can be {adj}.",
    "One {adj} detail about {w} is worth noting.",
    "Keep {w} {adj} and the rest follows.",
]


def candidate_responses(prompt: str, rng: random.Random, count: int = 12) -> list[str]:
    """Varied responses to ``prompt`` (length, tone, politeness, whether they take up the
    prompt's words) from which a behaviour picks its demonstration. The first is a plain
    one-sentence answer."""
    topics = sorted(content_words(prompt)) or ["this"]
    out = [f"Here is a {_NEUTRAL[0]} answer about {topics[0]}."]
    for _ in range(count - 1):
        tone = rng.choice([sorted(POSITIVE), _NEUTRAL, sorted(NEGATIVE)])
        sentences = []
        for _ in range(rng.randint(1, 5)):
            w = rng.choice(topics) if rng.random() < 0.7 else "it"
            sentences.append(
                rng.choice(_SENTENCES).format(
                    w=w, W=w[:1].upper() + w[1:], adj=rng.choice(tone), adj2=rng.choice(tone)
                )
            )
        out.append(rng.choice(_OPENERS) + " ".join(sentences))
    return out
