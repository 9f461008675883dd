"""What ``prefloop simulate`` reads: the token file and the preference function."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from app.simulation.behaviours import BEHAVIOURS
from app.simulation.preferences import SHIPPED, Preference
from app.simulation.runner import UsageError


@dataclass(frozen=True)
class TokenLine:
    token: str
    behaviour: str
    line: int


def parse_tokens(text: str, default_behaviour: str = "preference") -> list[TokenLine]:
    """One labeler per line: ``TOKEN`` or ``TOKEN BEHAVIOUR`` (preference, random, first);
    blank lines and lines starting with ``#`` are skipped."""
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) > 2:
            raise UsageError(
                f"tokens line {n}: expected 'TOKEN [BEHAVIOUR]', got {len(parts)} fields"
            )
        behaviour = parts[1] if len(parts) == 2 else default_behaviour
        if behaviour not in BEHAVIOURS:
            raise UsageError(
                f"tokens line {n}: unknown behaviour {behaviour!r}; choose from "
                f"{', '.join(BEHAVIOURS)}"
            )
        out.append(TokenLine(parts[0], behaviour, n))
    if not out:
        raise UsageError("the token file holds no token (one labeler's token per line)")
    return out


def read_tokens(path: str, default_behaviour: str = "preference") -> list[TokenLine]:
    """The token file at ``path`` (``-``: standard input)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the token file {path}: {exc}") from None
    return parse_tokens(text, default_behaviour)


def load_preference(spec: str) -> Preference:
    """``MODULE:FUNCTION`` (importable from the current directory too), ``path/to/file.py:
    FUNCTION``, or the short name of a shipped preference (``length``, ``keyword`` ...)."""
    if ":" not in spec:
        if spec in SHIPPED:
            return SHIPPED[spec]
        raise UsageError(
            f"--preference {spec!r}: expected MODULE:FUNCTION or one of {', '.join(SHIPPED)}"
        )
    module_name, _, function_name = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            location = Path(module_name)
            name = f"_prefloop_preference_{location.stem}"
            loader_spec = importlib.util.spec_from_file_location(name, location)
            if loader_spec is None or loader_spec.loader is None or not location.is_file():
                raise UsageError(f"--preference {spec!r}: no such file {module_name}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
        else:
            # a console script does not put the working directory on the path; python -m does
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(
            f"--preference {spec!r}: cannot import {module_name}: {type(exc).__name__}: {exc}"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UsageError(f"--preference {spec!r}: {module_name} has no function {function_name}")
    return cast(Preference, function)  # a callable; its signature is checked on use
