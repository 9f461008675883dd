"""Settings read from the environment the way the README documents them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings


@pytest.mark.parametrize("value", ["train,val", '["train", "val"]', " train , val "])
def test_split_lists_accept_commas_or_json(monkeypatch, value) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PREFLOOP_PII_SPLITS", value)
    monkeypatch.setenv("PREFLOOP_DEMONSTRATION_SPLITS", value)
    settings = Settings()
    assert settings.pii_splits == ("train", "val")
    assert settings.demonstration_splits == ("train", "val")


def test_split_ratios_from_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PREFLOOP_SPLIT_RATIOS", "0.7,0.2,0.1")
    assert Settings().split_ratios == (0.7, 0.2, 0.1)
    monkeypatch.setenv("PREFLOOP_SPLIT_RATIOS", "[0.5, 0.5, 0]")
    assert Settings().split_ratios == (0.5, 0.5, 0.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PREFLOOP_PII_SPLITS", "train,validation", "unknown split"),
        ("PREFLOOP_SPLIT_RATIOS", "0.5,0.5,0.5", "summing to 1"),
        ("PREFLOOP_PII_POLICY", "shred", "'redact' or 'drop'"),
    ],
)
def test_bad_settings_name_the_problem(monkeypatch, name, value, message) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_secret_is_generated_once_and_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = Settings(data_dir=tmp_path).session_secret()
    assert len(first) > 40
    assert Settings(data_dir=tmp_path).session_secret() == first
    assert Settings(data_dir=tmp_path, secret_key="given").session_secret() == "given"
