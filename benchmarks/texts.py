"""Realistic prompt texts for the load benchmarks: 50 to 4,000 characters of prose (a
log-normal length, median ~500), one in ten with PII (an e-mail address and a phone number).

Each text starts with a unique request tag of letters. ``numbered=True`` gives the earlier
tag, a 9-digit number: the phone recognizer then checks every text in 13 regions and finds a
valid national phone number in about half of them, so "one in ten with PII" did not hold.
"""

from __future__ import annotations

import random
import string

_PROSE = (
    "the model should explain how a small team can plan a garden with vegetables herbs and "
    "flowers across a season while keeping costs low and sharing the work fairly between "
    "neighbours who have different schedules budgets and ideas about what a good harvest means"
)
_WORDS = _PROSE.split(" ")


def realistic_text(rng: random.Random, numbered: bool = False) -> str:
    length = int(min(4000, max(50, rng.lognormvariate(6.2, 0.9))))
    words: list[str] = []
    size = 0
    while size < length:
        word = rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    text = " ".join(words)[:length]
    if rng.random() < 0.1:
        n = rng.randrange(10**6)
        text = f"Contact jane.doe{n}@example.com or +1 415 555 {n % 10000:04d}. " + text
    if numbered:
        tag = str(rng.randrange(10**9))
    else:
        tag = "".join(rng.choice(string.ascii_lowercase) for _ in range(9))
    return f"Request {tag}: " + text[:3980]
