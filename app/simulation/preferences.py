"""Preference functions shipped for demos and tests.

A preference function takes ``(prompt, text)`` (the prompt's text and one output's text) and
returns a number: the higher, the more a simulated labeler likes that output for that prompt.
Only the order of the numbers within one task matters (see `app/simulation/behaviours.py`).
It may instead return ``(number, flags)`` where ``flags`` names metadata flags (e.g.
``"hallucination"``) the labeler ticks for that output.

    prefloop simulate ... --preference app.simulation.preferences:length
    prefloop simulate ... --preference length            # the same, by short name
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# a number, or (number, flags to tick)
PreferenceResult = float | tuple[float, Iterable[str]]
Preference = Callable[[str, str], PreferenceResult]

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_STOPWORDS = """a an the and or but if then of to in on at by for with about from into over under this
    that these those is are was were be been being it its as do does did not no yes you your i me
    my we our they them their he she his her what which who whom how why when where write give
    tell explain describe make list short one two three please can could would should will"""
STOPWORDS = frozenset(_STOPWORDS.split())
# the same words as trainer/synthetic.py's hidden rule, so the tiny preset can learn it
POSITIVE = frozenset(["kind", "bright", "happy", "warm", "helpful", "clear", "good", "best"])
NEGATIVE = frozenset(["sad", "dull", "cold", "angry", "useless", "rude", "wrong", "bad"])
POLITE = ("please", "thank", "glad", "happy to help", "sorry", "hope this helps")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def content_words(text: str) -> set[str]:
    """The words of ``text`` that carry its topic (no stop words, at least three letters)."""
    return {w for w in words(text) if len(w) >= 3 and w not in STOPWORDS}


def length(prompt: str, text: str) -> float:
    """Longer outputs are better (number of words)."""
    return float(len(text.split()))


def brevity(prompt: str, text: str) -> float:
    """Shorter outputs are better (minus the number of words)."""
    return -float(len(text.split()))


def keyword(prompt: str, text: str) -> float:
    """Outputs that mention the prompt's content words are better (how many of them)."""
    return float(len(content_words(prompt) & set(words(text))))


def sentiment(prompt: str, text: str) -> float:
    """Positive words minus negative words (trainer/synthetic.py's hidden rule)."""
    found = words(text)
    return float(sum(w in POSITIVE for w in found) - sum(w in NEGATIVE for w in found))


def polite(prompt: str, text: str) -> float:
    """Courteous outputs are better (how many polite phrases they use)."""
    lowered = text.lower()
    return float(sum(lowered.count(phrase) for phrase in POLITE))


def keywords(*wanted: str) -> Preference:
    """A preference for outputs that contain any of ``wanted`` (case-insensitive; one point
    per occurrence), for tests: ``keywords("paris")``."""
    targets = [w.lower() for w in wanted]

    def preference(prompt: str, text: str) -> float:
        found = words(text)
        return float(sum(found.count(t) for t in targets))

    preference.__name__ = f"keywords({', '.join(targets)})"
    return preference


SHIPPED: dict[str, Preference] = {
    "length": length,
    "brevity": brevity,
    "keyword": keyword,
    "sentiment": sentiment,
    "polite": polite,
}


def names() -> Iterable[str]:
    return SHIPPED.keys()
