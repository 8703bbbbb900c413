"""The card as render makes it and settle reads it: typed fields for what the service itself decides by (its rules,
group, order, indicator, missing data), turned into CDS Hooks JSON once, at the response edge (to_json)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXTENSION_KEY = "org.spasm-cds"


@dataclass
class Card:
    """One card. `rules` is empty only for the notice of missing data (which has `missing_data`, possibly empty)."""

    uuid: str
    summary: str
    indicator: str  # info | warning | critical
    detail: str
    source: dict[str, Any]
    rule: str | None = None  # the one rule of a card about one finding
    group: str | None = None  # the card group (cards/services.yaml card_groups) whose findings it shows
    rules: tuple[str, ...] = ()
    rule_versions: dict[str, int] = field(default_factory=dict)
    order: str | None = None  # the draft order it is about
    missing_data: tuple[str, ...] | None = None  # the notice: the kinds of data it names
    details: dict[str, Any] = field(default_factory=dict)  # the rest of the extension: evidence, unread labs, ...
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    # suggestion uuid -> the rule that offers it, its kind (order-lab:<concept> or remove-draft) and its label: what
    # the card memory keeps (revision 0007) so accepted suggestions can be counted per rule; not in the card's JSON
    offered: dict[str, dict[str, str]] = field(default_factory=dict)
    selection_behavior: str | None = None
    override_reasons: list[dict[str, str]] | None = None
    links: list[dict[str, str]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """What identifies the card across calls: its group (group:<name>), its rule, or missing-data."""
        if self.group:
            return f"group:{self.group}"
        return self.rules[0] if self.rules else "missing-data"

    def to_json(self) -> dict[str, Any]:
        """The card as CDS Hooks JSON, with the service's extension under EXTENSION_KEY."""
        extension: dict[str, Any] = {}
        if self.rule:
            extension["rule"] = self.rule
        elif self.order is not None:  # a card of several findings about one order names it first, as it always has
            extension["order"] = self.order
        if self.group:
            extension["group"] = self.group
        if self.rules:
            extension.update(rules=list(self.rules), ruleVersions=dict(self.rule_versions))
        if self.missing_data is not None:
            extension["missingData"] = list(self.missing_data)
        extension.update(self.details)
        if self.rule and self.order is not None:
            extension["order"] = self.order
        out: dict[str, Any] = {"uuid": self.uuid, "summary": self.summary, "indicator": self.indicator,
                               "detail": self.detail, "source": self.source, "extension": {EXTENSION_KEY: extension}}
        if self.suggestions:
            out.update(suggestions=self.suggestions, selectionBehavior=self.selection_behavior)
        if self.override_reasons is not None:
            out["overrideReasons"] = self.override_reasons
        if self.links:
            out["links"] = self.links
        return out
