"""Settings from VOC_* variables and store URLs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.settings import load_settings
from services.core.store import StoreUrl


def test_environment_variables_configure_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOC_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("VOC_CLICKHOUSE_URL", "clickhouse://u:p@ch:9000/prod")
    monkeypatch.setenv("VOC_TOPIC_PREFIX", "acme")
    monkeypatch.setenv("VOC_TOPIC_PARTITIONS", "12")
    settings = load_settings()
    assert settings.bootstrap == "k1:9092,k2:9092"
    assert settings.topic("feedback.raw") == "acme.feedback.raw"
    assert settings.topic_partitions == 12
    assert settings.store_url == "clickhouse://u:p@ch:9000/prod"


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VOC_KAFKA_BOOTSTRAP", "VOC_CLICKHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.store_url.startswith("chdb://")
    assert settings.bootstrap == "127.0.0.1:9092"


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOC_TOPIC_PARTITIONS", "zero")
    with pytest.raises(ValidationError, match="topic_partitions"):
        load_settings()
    monkeypatch.delenv("VOC_TOPIC_PARTITIONS")
    monkeypatch.setenv("VOC_LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError, match="VOC_LOG_LEVEL"):
        load_settings()


def test_store_urls() -> None:
    server = StoreUrl.parse("clickhouse://ops:s%40cret@ch.example:9440/voc_prod")
    assert (server.backend, server.host, server.port, server.user, server.password,
            server.database) == ("clickhouse", "ch.example", 9440, "ops", "s@cret", "voc_prod")
    assert StoreUrl.parse("chdb:///var/lib/voc").path == "/var/lib/voc"
    assert StoreUrl.parse("chdb://rel/dir?database=x").database == "x"
    for bad in ("postgres://x", "chdb://", "clickhouse:///db"):
        with pytest.raises(ValueError, match="VOC_CLICKHOUSE_URL"):
            StoreUrl.parse(bad)
