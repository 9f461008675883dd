"""Export records in, token tensors out. One prompt template (`format_prompt`) is applied
identically in SFT, reward modelling, PPO and sampling.

Records (JSONL lines or dicts, as the export API writes them):
  demonstrations {"prompt", "completion"}; rankings {"prompt", "completions": [{"text",
  "rank"}, ...]} with rank 1 = best and ties sharing a rank; prompts {"prompt"};
  pre-training texts {"text"}.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import UnionType
from typing import Any

import torch

PROMPT_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"

Records = str | Path | Iterable[dict[str, Any]]


def format_prompt(prompt: str) -> str:
    """The text the model sees before its response."""
    return PROMPT_TEMPLATE.format(prompt=prompt.strip())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    with Path(path).open() as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from e
    return rows


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(path).open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def load_records(source: Records | None) -> list[dict[str, Any]]:
    """A JSONL (or .parquet) path or an iterable of dicts, as a list (None -> [])."""
    if source is None:
        return []
    if isinstance(source, str | Path) and str(source).endswith(".parquet"):
        import pyarrow.parquet as pq  # export snapshots may be Parquet

        rows: list[dict[str, Any]] = pq.read_table(source).to_pylist()
        return rows
    if isinstance(source, str | Path):
        return read_jsonl(source)
    return list(source)


def _require(record: dict[str, Any], key: str, kind: type | UnionType, n: int) -> Any:
    if not isinstance(record.get(key), kind):
        name = getattr(kind, "__name__", str(kind))  # "int | float" has no __name__
        raise ValueError(f"record {n}: '{key}' must be a {name}, got {record.get(key)!r}")
    return record[key]


def demonstrations(source: Records | None) -> list[dict[str, str]]:
    out = []
    for n, r in enumerate(load_records(source)):
        out.append(
            {
                "prompt": _require(r, "prompt", str, n),
                "completion": _require(r, "completion", str, n),
            }
        )
    return out


def prompts(source: Records | None) -> list[str]:
    return [_require(r, "prompt", str, n) for n, r in enumerate(load_records(source))]


def texts(source: Records | None) -> list[str]:
    return [_require(r, "text", str, n) for n, r in enumerate(load_records(source))]


def rankings(source: Records | None) -> list[dict[str, Any]]:
    """Validated rankings: {"prompt", "texts": [...], "ranks": [...]}. A ranking whose
    completions all tie carries no comparison and is dropped."""
    out = []
    for n, r in enumerate(load_records(source)):
        prompt = _require(r, "prompt", str, n)
        completions = _require(r, "completions", list, n)
        if len(completions) < 2:
            raise ValueError(f"record {n}: a ranking needs at least 2 completions")
        texts_ = [_require(c, "text", str, n) for c in completions]
        ranks = [_whole_rank(_require(c, "rank", int | float, n), n) for c in completions]
        if min(ranks) < 1:
            raise ValueError(f"record {n}: ranks start at 1 (best)")
        if len(set(ranks)) > 1:
            out.append({"prompt": prompt, "texts": texts_, "ranks": ranks})
    return out


def _whole_rank(rank: int | float, n: int) -> int:
    """A rank as an int; 2.0 is 2, but 1.5 (or True) is an error, not a silent tie."""
    if isinstance(rank, bool) or (isinstance(rank, float) and not rank.is_integer()):
        raise ValueError(f"record {n}: a rank must be a whole number, got {rank!r}")
    return int(rank)


# ---------------------------------------------------------------- tokenisation


def special_prefix(tokenizer: Any) -> list[int]:
    """The tokens the tokenizer puts before a text on its own (Llama's BOS; none for GPT-2).
    Prompts are tokenised without special tokens (the template is ours), so this is added
    back in front: a model pretrained with a BOS must see one."""
    cached = getattr(tokenizer, "_prefloop_prefix", None)
    if cached is None:
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a", add_special_tokens=True)["input_ids"]
        start = next((i for i in range(len(full)) if full[i : i + len(plain)] == plain), 0)
        cached = list(full[:start])
        tokenizer._prefloop_prefix = cached
    return list(cached)


def encode_prompt(tokenizer: Any, prompt: str, max_length: int) -> list[int]:
    """Template-formatted prompt tokens, truncated from the left (the end matters most),
    after the tokenizer's special prefix (BOS) if it has one."""
    prefix = special_prefix(tokenizer)
    ids = tokenizer(format_prompt(prompt), add_special_tokens=False)["input_ids"]
    keep = max(1, max_length - len(prefix))
    return prefix + list(ids[-keep:])


def encode_example(
    tokenizer: Any, prompt: str, completion: str, max_length: int
) -> tuple[list[int], int]:
    """prompt + completion + EOS tokens, and the number of prompt tokens. Prompt and response
    are tokenised separately, as they are when the policy generates after the prompt."""
    prefix = special_prefix(tokenizer)
    p = tokenizer(format_prompt(prompt), add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    budget = max_length - len(prefix)
    if len(p) + len(c) > budget:
        c = c[: budget - min(len(p), budget // 2)]
        p = p[-(budget - len(c)) :] if budget > len(c) else []
    return prefix + p + c, len(prefix) + len(p)


def pad(
    seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists into (input_ids, attention_mask)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def sft_batch(
    tokenizer: Any, batch: list[dict[str, str]], max_length: int
) -> dict[str, torch.Tensor]:
    """Right-padded demonstrations; labels are -100 on prompt and padding tokens, so the
    loss covers response tokens only."""
    encoded = [encode_example(tokenizer, r["prompt"], r["completion"], max_length) for r in batch]
    ids, mask = pad([e[0] for e in encoded], tokenizer.pad_token_id)
    labels = ids.clone()
    labels[mask == 0] = -100
    for i, (_, n_prompt) in enumerate(encoded):
        labels[i, :n_prompt] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def ranking_batch(
    tokenizer: Any, batch: list[dict[str, Any]], max_length: int
) -> dict[str, torch.Tensor]:
    """K-way batch: every completion of every prompt as one row (sum of K rows; K may differ
    between prompts), with `ranks` and `group` (the prompt's index in the batch) per row."""
    seqs, ranks, group = [], [], []
    for g, r in enumerate(batch):
        for text, rank in zip(r["texts"], r["ranks"], strict=True):
            seqs.append(encode_example(tokenizer, r["prompt"], text, max_length)[0])
            ranks.append(rank)
            group.append(g)
    ids, mask = pad(seqs, tokenizer.pad_token_id)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "ranks": torch.tensor(ranks),
        "group": torch.tensor(group),
    }


def pair_batch(
    tokenizer: Any, pairs: list[tuple[str, str]], max_length: int
) -> dict[str, torch.Tensor]:
    """(prompt, completion) pairs as right-padded rows, for scoring."""
    seqs = [encode_example(tokenizer, p, c, max_length)[0] for p, c in pairs]
    ids, mask = pad(seqs, tokenizer.pad_token_id)
    return {"input_ids": ids, "attention_mask": mask}


def lm_example(tokenizer: Any, text: str, max_length: int) -> list[int]:
    """A pre-training text as language-modelling tokens: special prefix, text, EOS."""
    prefix = special_prefix(tokenizer)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return prefix + list(ids[: max_length - 1 - len(prefix)]) + [tokenizer.eos_token_id]


def batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
