"""Settings come from SPASM_CDS_* variables over embedded defaults; a bad value is refused by name."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cds_service.settings import Settings
from cds_service.tools.settings_doc import END, START, settings_table, with_settings_table


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


def test_every_setting_has_help_and_the_readme_table_is_the_generated_one():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert with_settings_table(readme) == readme, "run `spasm-cds docs`: the README's settings table is stale"
    table = readme[readme.index(START):readme.index(END)]
    for field in dataclasses.fields(Settings):
        assert field.metadata.get("help"), field.name
        assert f"| `SPASM_CDS_{field.name.upper()}` |" in table, field.name


def test_the_table_shows_defaults_as_the_code_has_them():
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ")[1] for line in settings_table().splitlines()[2:]}
    assert len(rows) == len(dataclasses.fields(Settings))
    assert rows["SPASM_CDS_PORT"] == "`8080`"
    assert rows["SPASM_CDS_DATA_DIR"] == "`var`"  # a default_factory, called
    assert rows["SPASM_CDS_DATABASE_URL"] == "(empty)"
    assert rows["SPASM_CDS_KNOWLEDGE_DIR"] == "(see meaning)"  # an absolute path of this machine is never shown


def test_the_table_replaces_what_is_between_the_markers_and_needs_them():
    text = f"intro\n{START}\n| stale |\n{END}\noutro\n"
    assert with_settings_table(text) == f"intro\n{START}\n{settings_table()}{END}\noutro\n"
    for broken in ("no markers", f"{END}\n{START}\n", f"{START}\n{START}\n{END}\n"):
        with pytest.raises(ValueError, match="settings-table"):
            with_settings_table(broken)


@pytest.mark.parametrize(("name", "bad"), [("auth", "yes"), ("deduplicate", "true"), ("store_patient_ids", "1"),
                                           ("cpu_gate", "enabled"), ("try_it", "maybe"), ("proxy", "apache")])
def test_a_bad_switch_is_one_error_line_naming_the_variable_at_start(name, bad):
    """Issue 16: every switch is checked once, when the settings are made (from the environment or in code), and a
    bad value is one line that names the variable and what it accepts."""
    with pytest.raises(ValueError, match=f"^SPASM_CDS_{name.upper()}: ") as refused:
        Settings.from_env({f"SPASM_CDS_{name.upper()}": bad})
    message = str(refused.value)
    assert message.startswith(f"SPASM_CDS_{name.upper()}: {bad!r} is not ") and "\n" not in message
    with pytest.raises(ValueError, match=f"^SPASM_CDS_{name.upper()}: {bad!r} is not "):
        Settings(**{name: bad})


def test_switches_are_read_in_any_case_and_spacing_and_kept_in_one_spelling():
    settings = Settings.from_env({"SPASM_CDS_AUTH": " ON ", "SPASM_CDS_DEDUPLICATE": "Off",
                                  "SPASM_CDS_PUBLIC_URL": "https://cds.example.org", "SPASM_CDS_PROXY": "NGINX",
                                  "SPASM_CDS_THREADS": "1"})
    assert (settings.auth, settings.deduplicate, settings.proxy) == ("on", "off", "nginx")
    assert settings.auth_on and not settings.deduplicate_on and not settings.try_it_on
    assert not settings.cpu_gate_on  # on, but one thread: nothing to take turns with
