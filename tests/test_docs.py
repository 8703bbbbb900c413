"""Docs kept honest by tests: the generated knowledge pages are current, every card links to its rule's page,
and that page is served."""
from __future__ import annotations

from cds_service.case_runner import build_request, service_for
from cds_service.knowledge.docs import all_pages
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
                assert link["type"] == "absolute" and link["url"].startswith("http://localhost/knowledge/")
                linked.add(link["url"].rsplit("/", 1)[1])
    assert linked == set(knowledge.rules)
    for rule_id in linked:
        page = client.get(f"/knowledge/{rule_id}")
        assert page.status_code == 200 and page.mimetype == "text/html"
        assert knowledge.rules[rule_id].title.encode() in page.data or b"&" in page.data
    assert client.get("/knowledge").status_code == 200
