"""Recall and precision of the PII filter on tests/data/pii_cases.jsonl, per entity type.

Each case lists the entity types it contains (with repeats for several of a kind). A detection
counts as a true positive up to the expected count of its type in that case. PERSON cases are
only scored when a spaCy NER model is installed.

    python benchmarks/pii_eval.py [--cases tests/data/pii_cases.jsonl] [--show-misses]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.services.curation.pii import get_pii_filter  # noqa: E402


def evaluate(cases: list[dict], show_misses: bool = False) -> dict[str, Counter[str]]:
    pii_filter = get_pii_filter()
    scored = set(pii_filter.entities)
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for case in cases:
        expected = Counter(e for e in case["entities"] if e in scored)
        found = Counter(pii_filter.scan(case["text"]).counts)
        for entity in expected.keys() | found.keys():
            hit = min(expected[entity], found[entity])
            tp[entity] += hit
            fp[entity] += found[entity] - hit
            fn[entity] += expected[entity] - hit
        if show_misses and expected != found:
            print(f"  expected {dict(expected)} found {dict(found)}: {case['text']}")
    return {"tp": tp, "fp": fp, "fn": fn}


def ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=ROOT / "tests/data/pii_cases.jsonl")
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    cases = [json.loads(line) for line in args.cases.read_text().splitlines() if line.strip()]
    pii_filter = get_pii_filter()
    print(f"{len(cases)} cases; NER model: {pii_filter.ner_model or 'none (PERSON not scored)'}")
    counts = evaluate(cases, args.show_misses)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    print(f"{'entity':<16}{'tp':>5}{'fp':>5}{'fn':>5}{'recall':>9}{'precision':>11}")
    for entity in sorted(tp.keys() | fp.keys() | fn.keys()):
        recall = ratio(tp[entity], tp[entity] + fn[entity])
        precision = ratio(tp[entity], tp[entity] + fp[entity])
        print(f"{entity:<16}{tp[entity]:>5}{fp[entity]:>5}{fn[entity]:>5}"
              f"{recall:>9.3f}{precision:>11.3f}")  # fmt: skip
    all_tp, all_fp, all_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    print(f"{'ALL':<16}{all_tp:>5}{all_fp:>5}{all_fn:>5}"
          f"{ratio(all_tp, all_tp + all_fn):>9.3f}{ratio(all_tp, all_tp + all_fp):>11.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
