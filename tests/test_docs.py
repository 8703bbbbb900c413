"""Docs kept honest by tests: the generated knowledge pages and the README's settings table are current (and
`spasm-cds docs --check` says when they are not), every card links to its rule's page, and that page is served."""
from __future__ import annotations

import shutil

from cds_service.case_runner import build_request, service_for
from cds_service.cli import main
from cds_service.knowledge.docs import KINDS_START, all_pages, rule_language_files
from cds_service.schemas import SCHEMA_DIR
from tests.conftest import REPO


def test_generated_knowledge_pages_are_current(knowledge):
    pages = all_pages(knowledge)
    stale = [p for p, text in pages.items()
             if not (REPO / "docs" / p).is_file() or (REPO / "docs" / p).read_text() != text]
    extra = [p.name for p in (REPO / "docs" / "knowledge").glob("*.md") if f"knowledge/{p.name}" not in pages]
    assert not stale and not extra, f"run `spasm-cds docs`: stale {stale}, extra {extra}"


def test_every_rule_and_its_case_count_is_in_the_index(knowledge):
    index = (REPO / "docs" / "knowledge.md").read_text()
    for rule_id in knowledge.rules:
        assert f"[{rule_id}](knowledge/{rule_id}.md)" in index


def test_each_card_links_to_its_rules_page_and_the_page_is_served(client, knowledge, today):
    linked = set()
    for case in (c for c in knowledge.cases if c.expect == "card"):
        service = service_for(knowledge, case)
        response = client.post(f"/cds-services/{service.id}", json=build_request(knowledge, case, service, today))
        for card in response.get_json()["cards"]:
            for link in card.get("links", ()):
                if link["type"] == "smart":  # the timeline app (tests/unit/test_smart_link.py)
                    assert link["url"] == "http://localhost/smart/timeline/launch"
                    continue
                assert link["type"] == "absolute" and link["url"].startswith("http://localhost/knowledge/")
                linked.add(link["url"].rsplit("/", 1)[1])
    assert linked == set(knowledge.rules)
    for rule_id in linked:
        page = client.get(f"/knowledge/{rule_id}")
        assert page.status_code == 200 and page.mimetype == "text/html"
        assert knowledge.rules[rule_id].title.encode() in page.data or b"&" in page.data
    assert client.get("/knowledge").status_code == 200


def test_docs_check_catches_a_stale_readme_settings_table_and_docs_rewrites_it(tmp_path, capsys):
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    readme = tmp_path / "README.md"
    current = (REPO / "README.md").read_text()
    stale = "\n".join(line for line in current.splitlines() if not line.startswith("| `SPASM_CDS_PORT`")) + "\n"
    readme.write_text(stale)
    argv = ["--out", str(tmp_path / "docs"), "--readme", str(readme)]
    assert main(["docs", "--check", *argv]) == 1
    err = capsys.readouterr().err
    assert f"{readme}: the settings table is not current" in err and "knowledge" not in err
    assert readme.read_text() == stale  # --check writes nothing
    assert main(["docs", *argv]) == 0
    assert readme.read_text() == current
    assert main(["docs", "--check", *argv]) == 0


def test_docs_check_refuses_a_readme_without_the_table_markers(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# a README without the settings table\n")
    assert main(["docs", "--check", "--out", str(REPO / "docs"), "--readme", str(readme)]) == 1
    assert "settings-table:start" in capsys.readouterr().err


def test_the_rule_schema_and_the_kinds_table_are_written_from_the_criterion_registry():
    """rule.schema.json's criterion shapes and hooks, and cards/README.md's table of kinds, are what `spasm-cds docs`
    writes from evaluate/criteria.KINDS and the Hook enum."""
    stale = [str(p) for p, text in rule_language_files(REPO).items() if p.read_text(encoding="utf-8") != text]
    assert stale == [], f"run `spasm-cds docs`: {stale}"
    assert set(rule_language_files(REPO)) == {SCHEMA_DIR / "rule.schema.json", REPO / "cards" / "README.md"}


def test_docs_check_catches_a_stale_kinds_table_and_docs_rewrites_it(tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "cards", tmp_path / "cards")
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    readme = tmp_path / "cards" / "README.md"
    current = readme.read_text()
    stale = current.replace(KINDS_START, KINDS_START + "\n| `retired: kind` | never | none |")
    readme.write_text(stale)
    monkeypatch.setenv("SPASM_CDS_KNOWLEDGE_DIR", str(tmp_path))
    argv = ["--out", str(tmp_path / "docs"), "--readme", str(REPO / "README.md")]
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    assert main(["docs", "--check", *argv]) == 1
    assert f"{readme}: not current with the criterion kinds" in capsys.readouterr().err
    assert readme.read_text() == stale
    assert main(["docs", *argv]) == 0
    assert readme.read_text() == current
