"""GET /knowledge and /knowledge/<rule id>: each rule's page, generated from the rule itself, linked from its cards."""
from __future__ import annotations

import html

import markdown
from flask import Blueprint, Response

from ..errors import UnknownService
from ..knowledge.docs import index_page, rule_page
from .current import state

bp = Blueprint("knowledge_pages", __name__)
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top}}
blockquote{{border-left:4px solid #999;margin:0;padding:0 1rem;background:#f6f6f6}}</style></head>
<body>{body}</body></html>"""


def _html(title: str, text: str) -> Response:
    body = markdown.markdown(text, extensions=["tables"])
    return Response(_PAGE.format(title=html.escape(title), body=body), mimetype="text/html")


@bp.get("/knowledge")
def knowledge_index() -> Response:
    """Every rule, with what triggers it and its grading."""
    return _html("spasm-cds knowledge", index_page(state().knowledge).replace("(knowledge/", "(/knowledge/")
                 .replace(".md)", ")"))


@bp.get("/knowledge/<rule_id>")
def knowledge_rule(rule_id: str) -> Response:
    """One rule's page: when it fires, what the card says, its sources and cases."""
    knowledge = state().knowledge
    rule = knowledge.rules.get(rule_id)
    if rule is None:
        raise UnknownService(f"no rule {rule_id!r}; see /knowledge")
    return _html(rule.title, rule_page(rule, knowledge))
