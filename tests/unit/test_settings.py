"""Settings come from SPASM_CDS_* variables over embedded defaults; a bad value is refused by name."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cds_service.settings import Settings


def test_defaults_serve_the_bundled_knowledge_on_loopback():
    settings = Settings.from_env({})
    assert (settings.knowledge_dir / "cards" / "services.yaml").is_file()
    assert settings.host == "127.0.0.1"
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("spasm-cds.sqlite3")


def test_environment_overrides_each_field_with_its_type():
    settings = Settings.from_env({"SPASM_CDS_PORT": "9100", "SPASM_CDS_FHIR_READ_TIMEOUT_S": "1.5",
                                  "SPASM_CDS_DATA_DIR": "/tmp/x", "SPASM_CDS_DATABASE_URL": "postgresql://h/db"})
    assert settings.port == 9100
    assert settings.fhir_read_timeout_s == 1.5
    assert settings.data_dir == Path("/tmp/x")
    assert settings.effective_database_url == "postgresql://h/db"


def test_explicit_overrides_beat_the_environment():
    assert Settings.from_env({"SPASM_CDS_PORT": "9100"}, port=9200).port == 9200


def test_a_bad_value_names_the_variable():
    with pytest.raises(ValueError, match="SPASM_CDS_WORKERS"):
        Settings.from_env({"SPASM_CDS_WORKERS": "many"})


def test_every_setting_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for field in dataclasses.fields(Settings):
        assert f"SPASM_CDS_{field.name.upper()}" in readme, field.name
        assert field.metadata.get("help"), field.name
