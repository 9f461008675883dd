"""Recognizers added to Presidio's where its defaults miss common formats.

Presidio's built-in card recognizer misses 15-digit Amex groupings and card numbers that start
with digits outside its prefix list; its SSN recognizer scores plain ``123-45-6789`` low without
context words; it has no recognizer for URLs carrying a user name and password.
"""

from __future__ import annotations

import re

import phonenumbers
import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import EmailRecognizer, IpRecognizer, PhoneRecognizer

# the suffix list shipped inside tldextract; the module-level default fetches it over the network
_OFFLINE_TLDS = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum used by every payment card number."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


class LuhnCardRecognizer(PatternRecognizer):
    """13-19 digit card numbers, plain or grouped by single spaces or dashes, Luhn-checked."""

    PATTERNS = [
        Pattern("card (grouped or plain)", r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])", 0.1),
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="CREDIT_CARD",
            patterns=self.PATTERNS,
            context=["card", "credit", "visa", "mastercard", "amex", "cc", "payment"],
            name="LuhnCardRecognizer",
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = re.sub(r"[ -]", "", pattern_text)
        if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
            return False
        # separators, when used, must be consistent (one kind), as printed on cards and forms
        if " " in pattern_text and "-" in pattern_text:
            return False
        return luhn_valid(digits)


class StrictSsnRecognizer(PatternRecognizer):
    """US social security numbers written ``AAA-GG-SSSS`` or ``AAA GG SSSS``, invalid areas out."""

    PATTERNS = [Pattern("ssn", r"\b\d{3}([- ])\d{2}\1\d{4}\b", 0.6)]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="US_SSN",
            patterns=self.PATTERNS,
            context=["ssn", "social", "security", "ss#"],
            name="StrictSsnRecognizer",
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        area, group, serial = re.split(r"[- ]", pattern_text)
        if area in {"000", "666"} or area.startswith("9"):
            return False
        return group != "00" and serial != "0000"


class CredentialUrlRecognizer(PatternRecognizer):
    """URLs with a ``user:password@`` part (database DSNs, basic-auth links)."""

    PATTERNS = [
        Pattern(
            "url with credentials",
            r"\b[a-z][a-z0-9+.\-]*://[^\s/:@]*:[^\s/@]+@[^\s\"'<>]+",
            0.95,
        )
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="URL_CREDENTIALS",
            patterns=self.PATTERNS,
            name="CredentialUrlRecognizer",
        )


class InternationalPhoneRecognizer(PatternRecognizer):
    """``+CC`` numbers in any grouping; the phonenumbers-based recognizer covers national forms."""

    PATTERNS = [
        Pattern(
            "international phone",
            r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(?\d{1,4}\)?){2,5}(?![\w])",
            0.5,
        ),
        # 00 instead of +: only with spaces, so dashed IDs like 001-01-0001 stay out
        Pattern("00-prefixed phone", r"(?<!\d)00\d{1,3}(?: \d{2,4}){2,5}(?!\d)", 0.4),
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PHONE_NUMBER",
            patterns=self.PATTERNS,
            context=["phone", "call", "tel", "mobile", "cell", "whatsapp", "number", "fax"],
            name="InternationalPhoneRecognizer",
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = re.sub(r"\D", "", pattern_text)
        # None keeps the pattern's score (True would raise it to certainty)
        return None if 8 <= len(digits) <= 15 else False


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer validating the domain against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool | None:
        return _OFFLINE_TLDS(pattern_text).suffix != ""


# 7+ digits with at most one separator between them: the least any phone number has
_PHONE_CANDIDATE = re.compile(r"(?:\d[\s().\-]{0,2}){6,}\d")


# candidates phonenumbers may try per region and window: its matcher is slow on text dense
# with digits (0.4 ms a character for "1 2 1 2 ..."), and a window holds few real numbers
PHONE_MAX_TRIES = 64


class FastPhoneRecognizer(PhoneRecognizer):
    """Presidio's phonenumbers-based recognizer, skipped on texts that hold no digit run long
    enough to be a phone number (it runs one matcher per region, the filter's main cost), and
    with a bounded number of candidates per region, so digit-dense text cannot stall it."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if not _PHONE_CANDIDATE.search(text):
            return []
        results: list[RecognizerResult] = []
        for region in self.supported_regions:
            # presidio's own analyze passes its Optional leniency (set in __init__) the same way
            matches = phonenumbers.PhoneNumberMatcher(
                text,
                region,
                leniency=self.leniency,  # type: ignore[arg-type]
                max_tries=PHONE_MAX_TRIES,
            )
            for match in matches:
                try:
                    parsed = phonenumbers.parse(text[match.start : match.end])
                    found_region = phonenumbers.region_code_for_number(parsed)
                except phonenumbers.NumberParseException:
                    found_region = region
                results.append(
                    self._get_recognizer_result(  # type: ignore[no-untyped-call]  # presidio's
                        match, text, found_region, nlp_artifacts
                    )
                )
        return EntityRecognizer.remove_duplicates(results)


# every IPv4 form has a digit, a dot and a digit; every IPv6 form a colon
_IP_CANDIDATE = re.compile(r"\d\.\d|:")


class FastIpRecognizer(IpRecognizer):
    """Presidio's IP recognizer, skipped on texts where none of its patterns can match (its
    IPv6 expressions are a sixth of the scan of a text with no PII)."""

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        if not _IP_CANDIDATE.search(text):
            return []
        return super().analyze(text, entities, nlp_artifacts, regex_flags)
