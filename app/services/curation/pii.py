"""PII detection and redaction with Microsoft Presidio, fully offline.

Presidio's default analyzer wants a downloaded spaCy model; here the NLP engine is a blank
English spaCy pipeline (tokenizer only, lower-cased tokens as lemmas so Presidio's context words
still raise scores), and the entities are found by pattern recognizers: Presidio's own plus
those in ``pii_recognizers``. Person names need a statistical NER model: when a spaCy model with
NER is installed (``PREFLOOP_PII_NER_MODEL``, or the first of en_core_web_{lg,md,sm,trf}), it
is used and PERSON is detected too; otherwise names are not detected.

Bounded in time whatever the text: spaCy's tokenizer is quadratic on a long run of punctuation
(10,000 "!" took 22 s), and some recognizers are superlinear on digit-dense text. So the
tokenizer sees a copy of the text (same length, same offsets) whose non-space runs longer than
``RUN_MAX`` are broken by spaces; the recognizers' regular expressions still read the original.
Texts are analysed in windows of ``WINDOW`` characters overlapping by ``OVERLAP`` (longer than
any entity we look for), and a per-text ``deadline`` is checked between windows: a text that is
not done in time raises ``ScanTimeout`` and its prompt is rejected, never stored unscanned. The
deadline counts the scanning process's CPU time, so a busy machine does not reject a text that
a quiet one would accept; a stuck worker is caught by the pool's wall-clock limit instead.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from functools import lru_cache
from typing import Any

import spacy
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    IbanRecognizer,
    SpacyRecognizer,
)
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from spacy.tokens import Doc

from app.services.curation.pii_recognizers import (
    CredentialUrlRecognizer,
    FastIpRecognizer,
    FastPhoneRecognizer,
    InternationalPhoneRecognizer,
    LuhnCardRecognizer,
    OfflineEmailRecognizer,
    StrictSsnRecognizer,
)
from app.services.curation.pii_scan import (
    PiiScan,
    ScanTimeout,
    installed_ner_model,
)

log = logging.getLogger(__name__)

STRUCTURED_ENTITIES = [
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "IBAN_CODE",
    "URL_CREDENTIALS",
]
# phonenumbers regions tried for numbers written without a +country prefix
PHONE_REGIONS = ["US", "GB", "DE", "FR", "IN", "CA", "AU", "BR", "ES", "IT", "NL", "JP", "MX"]
# below this Presidio score a match is ignored (unvalidated weak patterns, no context)
SCORE_THRESHOLD = 0.35
SSN_SHAPE = re.compile(r"\d{3}([- ])\d{2}\1\d{4}")
RUN_MAX = 64  # longest non-space run the tokenizer sees in one piece
WINDOW = 1000  # characters analysed at once
OVERLAP = 200  # shared by neighbouring windows: an entity this short lies wholly in one
WORDS_KEPT = 100_000  # stop-word and punctuation answers kept per scanner process
_LONG_RUN = re.compile(r"\S{" + str(RUN_MAX + 1) + ",}")


def _break_runs(match: re.Match[str]) -> str:
    run = match.group(0)
    return "".join(" " if i % RUN_MAX == RUN_MAX - 1 else c for i, c in enumerate(run))


def tokenizer_safe(text: str) -> str:
    """``text`` with every non-space run longer than RUN_MAX broken by spaces (same length)."""
    return _LONG_RUN.sub(_break_runs, text)


def windows(length: int) -> list[tuple[int, int]]:
    """(start, end) of the overlapping windows that cover ``length`` characters."""
    if length <= WINDOW:
        return [(0, length)]
    step = WINDOW - OVERLAP
    starts = range(0, length - OVERLAP, step)
    return [(start, min(start + WINDOW, length)) for start in starts]


class BlankSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine on ``spacy.blank("en")``: nothing to download, no NER.

    A blank pipeline has no lemmatizer; Presidio's context enhancer compares lemmas, so each
    token's lemma is its lower-cased text. The artifacts are read from the tokenizer's arrays
    (no Python ``Token`` per token) and the stop-word and punctuation look-ups are kept per
    word: the same artifacts as Presidio's, in a third of the time.
    """

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])
        self._stop: dict[str, bool] = {}
        self._punct: dict[str, bool] = {}

    def load(self) -> None:
        self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]  # None until load()

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        strings = doc.vocab.strings
        columns = doc.to_array(["IDX", "LOWER"]).tolist() if len(doc) else []
        return NlpArtifacts(
            entities=[],
            tokens=doc,
            tokens_indices=[idx for idx, _ in columns],
            lemmas=[strings[lower] for _, lower in columns],
            nlp_engine=self,
            language=language,
        )

    def is_stopword(self, word: str, language: str) -> bool:
        if word not in self._stop:
            if len(self._stop) >= WORDS_KEPT:
                self._stop.clear()
            self._stop[word] = super().is_stopword(word, language)
        return self._stop[word]

    def is_punct(self, word: str, language: str) -> bool:
        if word not in self._punct:
            if len(self._punct) >= WORDS_KEPT:
                self._punct.clear()
            self._punct[word] = super().is_punct(word, language)
        return self._punct[word]


class LazyNlpArtifacts(NlpArtifacts):
    """The NLP engine's artifacts of ``text``, computed on first use.

    Presidio's pattern recognizers do not read them; only context enhancement (and the NER
    recognizer) does, and context enhancement only for a window where a recognizer found
    something. Most windows hold no PII, so most never pay for spaCy's tokenizer (about a sixth
    of the scan).
    """

    def __init__(self, nlp_engine: NlpEngine, text: str) -> None:  # noqa: D107 (no super call)
        self._engine = nlp_engine
        self._text = text

    def __getattr__(self, name: str) -> Any:
        # only reached for an attribute not yet set: run the engine once, keep its artifacts
        if name.startswith("_"):
            raise AttributeError(name)
        self.__dict__.update(vars(self._engine.process_text(self._text, "en")))
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(name) from None


class PiiFilter:
    """One analyzer + anonymizer, built once per process (see ``get_pii_filter``)."""

    def __init__(self, ner_model: str | None = None) -> None:
        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in (
            OfflineEmailRecognizer(),
            FastPhoneRecognizer(supported_regions=PHONE_REGIONS),
            InternationalPhoneRecognizer(),
            CreditCardRecognizer(),
            LuhnCardRecognizer(),
            StrictSsnRecognizer(),
            FastIpRecognizer(),
            IbanRecognizer(),
            CredentialUrlRecognizer(),
        ):
            registry.add_recognizer(recognizer)
        self.entities = list(STRUCTURED_ENTITIES)
        if ner_model:
            nlp_engine: SpacyNlpEngine = SpacyNlpEngine(
                models=[{"lang_code": "en", "model_name": ner_model}]
            )
            registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON"]))
            self.entities.append("PERSON")
        else:
            nlp_engine = BlankSpacyNlpEngine()
        self.ner_model = ner_model
        self.analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=nlp_engine, supported_languages=["en"]
        )
        self.anonymizer = AnonymizerEngine()

    def find(self, text: str, deadline: float | None = None) -> list[RecognizerResult]:
        """Non-overlapping detections; a longer span wins over one it overlaps. ``deadline``
        (a ``time.process_time()`` value) raises ``ScanTimeout`` when passed between windows."""
        safe = tokenizer_safe(text)
        results: list[RecognizerResult] = []
        for start, end in windows(len(text)):
            if deadline is not None and time.process_time() > deadline:
                raise ScanTimeout(f"PII scan stopped at character {start} of {len(text)}")
            artifacts = LazyNlpArtifacts(self.analyzer.nlp_engine, safe[start:end])
            found = self.analyzer.analyze(
                text=text[start:end],
                language="en",
                entities=self.entities,
                score_threshold=SCORE_THRESHOLD,
                nlp_artifacts=artifacts,
            )
            for r in found:
                r.start += start
                r.end += start
            results.extend(found)
        # no numbering plan groups phone numbers 3-2-4: that shape is an SSN (valid or not)
        results = [
            r
            for r in results
            if not (r.entity_type == "PHONE_NUMBER" and SSN_SHAPE.fullmatch(text[r.start : r.end]))
        ]
        chosen: list[RecognizerResult] = []
        for result in sorted(results, key=lambda r: (r.start - r.end, -r.score, r.start)):
            if all(result.end <= c.start or result.start >= c.end for c in chosen):
                chosen.append(result)
        return sorted(chosen, key=lambda r: r.start)

    def scan(self, text: str, deadline: float | None = None) -> PiiScan:
        """Replace each detected span by ``<ENTITY_TYPE>`` and count the entity types."""
        found = self.find(text, deadline)
        if not found:
            return PiiScan(text=text)
        operators = {
            entity: OperatorConfig("replace", {"new_value": f"<{entity}>"})
            for entity in {r.entity_type for r in found}
        }
        redacted = self.anonymizer.anonymize(
            text=text,
            analyzer_results=found,  # type: ignore[arg-type]
            operators=operators,
        ).text
        return PiiScan(text=redacted, counts=dict(Counter(r.entity_type for r in found)))


@lru_cache(maxsize=1)
def get_pii_filter() -> PiiFilter:
    """The process-wide filter (building Presidio's registry takes a noticeable moment)."""
    model = installed_ner_model()
    if model is None:
        log.info("no spaCy NER model installed: person names are not detected as PII")
    return PiiFilter(ner_model=model)
