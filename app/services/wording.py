"""Words for figures shown to people: ``counted(1, "demonstration")`` is "1 demonstration",
``counted(2, "demonstration")`` "2 demonstrations" (pages and messages alike)."""

from __future__ import annotations


def counted(n: int, singular: str, plural: str | None = None) -> str:
    word = singular if n == 1 else (plural or f"{singular}s")
    return f"{n:,} {word}"
