"""The PII filter: every structured type redacted, offline, and scored on the written case set."""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path

import pytest

from app.services.curation.pii import PiiFilter, get_pii_filter

CASES = Path(__file__).resolve().parents[1] / "data" / "pii_cases.jsonl"

STRUCTURED = [
    ("EMAIL_ADDRESS", "Write back to maria.garcia99@correo.es today", "maria.garcia99@correo.es"),
    ("EMAIL_ADDRESS", "cc SUPPORT@EXAMPLE.COM please", "SUPPORT@EXAMPLE.COM"),
    ("PHONE_NUMBER", "Call +44 20 7946 0958 tomorrow", "+44 20 7946 0958"),
    ("PHONE_NUMBER", "ring (415) 555-0132 now", "(415) 555-0132"),
    ("PHONE_NUMBER", "Büro: 0049 30 1234 5678", "0049 30 1234 5678"),
    ("PHONE_NUMBER", "mobile +91 98765 43210", "+91 98765 43210"),
    ("CREDIT_CARD", "pay with 4111111111111111", "4111111111111111"),
    ("CREDIT_CARD", "pay with 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "pay with 5105-1051-0510-5100", "5105-1051-0510-5100"),
    ("CREDIT_CARD", "amex 3782 822463 10005 ok", "3782 822463 10005"),
    ("US_SSN", "my ssn 078-05-1120", "078-05-1120"),
    ("US_SSN", "SSN 536 90 4399 on file", "536 90 4399"),
    ("IP_ADDRESS", "host 172.16.254.1 is down", "172.16.254.1"),
    ("IP_ADDRESS", "v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 here",
     "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("IBAN_CODE", "IBAN GB82 WEST 1234 5698 7654 32 thanks", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN_CODE", "to FR1420041010050500013M02606", "FR1420041010050500013M02606"),
    ("URL_CREDENTIALS", "use postgres://admin:s3cret@db.internal:5432/app now",
     "postgres://admin:s3cret@db.internal:5432/app"),
    ("URL_CREDENTIALS", "clone https://deploy:tok3n@git.example.com/x.git",
     "https://deploy:tok3n@git.example.com/x.git"),
]  # fmt: skip


@pytest.fixture(scope="module")
def pii() -> PiiFilter:
    return get_pii_filter()


@pytest.mark.parametrize(("entity", "text", "value"), STRUCTURED)
def test_each_structured_type_is_redacted(
    pii: PiiFilter, entity: str, text: str, value: str
) -> None:
    scan = pii.scan(text)
    assert scan.counts == {entity: 1}
    assert value not in scan.text
    assert scan.text == text.replace(value, f"<{entity}>")


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails the Luhn check",
        "area 666 is never issued: 666-12-3456",
        "https://example.com/path?q=a:b has no credentials",
        "IBAN DE89370400440532013001 has a bad checksum",
        "version 1.2.3 and 999.1.1.1 are not addresses",
        "Write a story about a wise frog.",
    ],
)
def test_lookalikes_are_left_alone(pii: PiiFilter, text: str) -> None:
    scan = pii.scan(text)
    assert scan.counts == {} and scan.text == text


def test_several_entities_counted(pii: PiiFilter) -> None:
    scan = pii.scan("a@example.com, b@example.com, 10.0.0.1 and 4111-1111-1111-1111")
    assert scan.counts == {"EMAIL_ADDRESS": 2, "IP_ADDRESS": 1, "CREDIT_CARD": 1}
    assert scan.text == "<EMAIL_ADDRESS>, <EMAIL_ADDRESS>, <IP_ADDRESS> and <CREDIT_CARD>"


def test_filter_builds_and_runs_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the PII filter tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("PREFLOOP_PII_NER_MODEL", "none")
    from app.config import get_settings

    get_settings.cache_clear()
    fresh = PiiFilter(ner_model=None)
    assert "PERSON" not in fresh.entities
    assert fresh.scan("mail x@example.co.uk").counts == {"EMAIL_ADDRESS": 1}
    get_settings.cache_clear()


def test_case_set_recall_and_precision(pii: PiiFilter) -> None:
    cases = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
    assert len(cases) >= 200
    scored = set(pii.entities)
    tp = fp = fn = 0
    seen_types: set[str] = set()
    for case in cases:
        expected = Counter(e for e in case["entities"] if e in scored)
        found = Counter(pii.scan(case["text"]).counts)
        seen_types |= expected.keys()
        for entity in expected.keys() | found.keys():
            hit = min(expected[entity], found[entity])
            tp, fp, fn = tp + hit, fp + found[entity] - hit, fn + expected[entity] - hit
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "IBAN_CODE",
            "URL_CREDENTIALS"} <= seen_types  # fmt: skip
    assert tp / (tp + fn) >= 0.95
    assert tp / (tp + fp) >= 0.9


def test_tokenizer_runs_only_for_windows_with_a_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    """spaCy's artifacts are only needed for context words, so a window where no recognizer
    matched skips them; where one matched, context still raises the score as before."""
    fresh = PiiFilter(ner_model=None)
    calls: list[str] = []
    process_text = fresh.analyzer.nlp_engine.process_text

    def counted(text: str, language: str) -> object:
        calls.append(text)
        return process_text(text, language)

    monkeypatch.setattr(fresh.analyzer.nlp_engine, "process_text", counted)
    assert fresh.scan("Write a story about a wise frog. " * 60).counts == {}
    assert calls == []
    with_context = fresh.find("my phone number is (415) 555-0132")
    without = fresh.find("the value was (415) 555-0132")
    assert len(calls) == 2
    assert [r.entity_type for r in with_context + without] == ["PHONE_NUMBER"] * 2
    assert with_context[0].score > without[0].score


@pytest.mark.parametrize(
    "text", ["", "Hello, World! It's my phone: (415) 555-0132.", "ÉCOLE straße İstanbul a:b"]
)
def test_blank_engine_artifacts_are_presidios(text: str) -> None:
    """The artifacts read from spaCy's arrays equal what Presidio builds token by token, with
    each token's lower-cased text as its lemma, and its keywords (stop words and punctuation
    out, answered from the per-word cache)."""
    from app.services.curation.pii import BlankSpacyNlpEngine

    engine = BlankSpacyNlpEngine()
    engine.load()
    for _ in range(2):  # the second time from the cache
        got = engine.process_text(text, "en")
        doc = engine.get_nlp("en")(text)
        vocab = doc.vocab
        lemmas = [t.lower_ for t in doc]
        keywords = [
            part
            for k in lemmas
            if not vocab[k].is_stop and not vocab[k].is_punct and k not in {"-PRON-", "be"}
            for part in k.split(":")
        ]
        assert got.tokens_indices == [t.idx for t in doc]
        assert got.lemmas == lemmas
        assert got.keywords == keywords
        assert list(got.entities) == []


@pytest.mark.parametrize(
    "text",
    [
        "host 172.16.254.1 is down",
        "v6 2001:db8::7334 and ::1 and :: and ::ffff:10.0.0.1 and fe80::1%eth0",
        "embedded 64:ff9b::192.0.2.33 here",
        "no address in a sentence about version 1.2 of something",
        "Write a story about a wise frog.",
    ],
)
def test_fast_ip_recognizer_finds_what_presidios_finds(text: str) -> None:
    from presidio_analyzer.predefined_recognizers import IpRecognizer

    from app.services.curation.pii_recognizers import FastIpRecognizer

    def spans(recognizer: IpRecognizer) -> list[tuple[int, int, float]]:
        found = recognizer.analyze(text, ["IP_ADDRESS"])
        return sorted((r.start, r.end, r.score) for r in found)

    assert spans(FastIpRecognizer()) == spans(IpRecognizer())
