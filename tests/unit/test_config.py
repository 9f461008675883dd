"""Settings read from the environment the way the README documents them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings


@pytest.mark.parametrize("value", ["train,val", '["train", "val"]', " train , val "])
def test_split_lists_accept_commas_or_json(monkeypatch, value) -> None:
    monkeypatch.setenv("PREFLOOP_PII_SPLITS", value)
    monkeypatch.setenv("PREFLOOP_DEMONSTRATION_SPLITS", value)
    settings = Settings()
    assert settings.pii_splits == ("train", "val")
    assert settings.demonstration_splits == ("train", "val")


def test_split_ratios_from_env(monkeypatch) -> None:
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
def test_bad_settings_name_the_problem(monkeypatch, name, value, message) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_secret_is_generated_once_and_kept(tmp_path) -> None:
    first = Settings(data_dir=tmp_path).session_secret()
    assert len(first) > 40
    assert Settings(data_dir=tmp_path).session_secret() == first
    given = "a-configured-secret-of-at-least-32-bytes"
    assert Settings(data_dir=tmp_path, secret_key=given).session_secret() == given


@pytest.mark.parametrize(
    "secret, message",
    [
        ("change-me-to-a-long-random-string", "placeholder from .env.example"),
        ("short-but-not-empty", "at least 32"),
        ("x" * 31, "at least 32"),
    ],
)
def test_a_public_or_short_secret_key_is_refused(tmp_path, secret, message) -> None:
    # before: any secret was used as given; a cookie signed with the .env.example placeholder
    # was accepted as admin
    from app.config import InsecureSecretKey

    with pytest.raises(InsecureSecretKey, match=message):
        Settings(data_dir=tmp_path, secret_key=secret).session_secret()
    # a secret file under the data dir is held to the same rule
    (tmp_path / "secret_key").write_text("too-short")
    with pytest.raises(InsecureSecretKey, match="at least 32"):
        Settings(data_dir=tmp_path).session_secret()


def test_trusted_proxies_must_be_addresses_or_networks(monkeypatch) -> None:
    monkeypatch.setenv("PREFLOOP_TRUSTED_PROXIES", "10.0.0.0/8, ::1")
    assert [str(n) for n in Settings().trusted_proxy_networks] == ["10.0.0.0/8", "::1/128"]
    monkeypatch.setenv("PREFLOOP_TRUSTED_PROXIES", "proxy.internal")
    with pytest.raises(ValidationError, match="not an IP address or network"):
        Settings()
