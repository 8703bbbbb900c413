"""Finding + card template -> a Card (render/card.py): uuid, indicator, summary, detail, source, suggestions,
overrideReasons, links. Text comes from cards/ only; placeholders are {alias.field}."""
from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from ..evaluate.engine import Evaluation, Finding
from ..knowledge.model import PLACEHOLDER, Knowledge
from ..vocabulary import DRAFT_ORDERS
from .card import EXTENSION_KEY as EXTENSION_KEY  # where the callers have always found it
from .card import Card
from .smart_link import smart_link
from .suggestions import order_lab_suggestion, remove_draft_suggestion

CARD_NAMESPACE = uuid.UUID("6f1d3c2e-8a7b-5d4c-9e0f-123456789abc")
RULE_TOPIC_SYSTEM = "urn:spasm-cds:rule"
GROUP_TOPIC_SYSTEM = "urn:spasm-cds:card-group"
OVERRIDE_SYSTEM = "urn:spasm-cds:override-reason"
_ORDER = {"critical": 0, "warning": 1, "info": 2}


# fields of a condition holding the EHR's display or the concept label, which read in lower case inside a sentence
# (a drug's display may be a brand name, so only diagnoses are lowered)
_NAME_FIELDS = {"name", "label", "evidence"}
DIAGNOSIS_ALIASES = frozenset({"condition"})
_TITLE_WORD = re.compile(r"(?<![\w'’-])[A-Z][a-z]+(?![\w'’-])")
# "{x.name} ({x.label})" says the label only when it adds something
_NAME_THEN_LABEL = re.compile(r"(\**\{([a-z_]+)\.name\}\**) \(\{\2\.label\}\)")
_SENTENCE_END = re.compile(r"(^|[.!?:]|\n)[\s*_]*$")


def fill(template: str, fields: dict[str, str], proper_names: frozenset[str] = frozenset(),
         opens_sentence: bool = True, diagnoses: frozenset[str] = DIAGNOSIS_ALIASES) -> str:
    """Replace {alias.field} placeholders with the finding's values. A diagnosis (a placeholder of an alias in
    `diagnoses`) filled in mid-sentence is written in lower case ("on hypothyroidism"), except acronyms, eponyms
    ("Parkinson's", `proper_names`) and hyphenated names; brackets inside brackets become commas ("(reference
    3.5–5 mmol/L, typical adult range)"); "{x.name} ({x.label})" drops a label that says the same as the name."""
    def value(m: re.Match) -> str:
        text = fields.get(f"{m.group(1)}.{m.group(2)}", m.group(0))
        if m.group(1) in diagnoses and m.group(2) in _NAME_FIELDS and (m.start() > 0 or not opens_sentence) \
                and not (m.start() > 0 and _SENTENCE_END.search(template[:m.start()])):
            text = mid_sentence(text, proper_names)
        return text

    def same_as_name(m: re.Match) -> str:
        name, label = fields.get(f"{m.group(2)}.name"), fields.get(f"{m.group(2)}.label")
        return m.group(1) if name is not None and name.casefold() == (label or "").casefold() else m.group(0)
    template = _NAME_THEN_LABEL.sub(same_as_name, template)
    return flatten_brackets(PLACEHOLDER.sub(value, template))


_NESTED_OPEN = re.compile(r"\([^)]*\(")


def mid_sentence(name: str, proper_names: frozenset[str] = frozenset()) -> str:
    """A name as it reads inside a sentence: capitalised plain words in lower case, others as they are."""
    return _TITLE_WORD.sub(lambda m: m.group(0) if m.group(0) in proper_names else m.group(0).lower(), name)


def flatten_brackets(text: str) -> str:
    """Round brackets inside round brackets become a comma-separated aside; a Markdown link's url is kept."""
    if not _NESTED_OPEN.search(text):
        return text  # most card text has no bracket inside a bracket: skip the character walk
    out: list[str] = []
    stack: list[str] = []  # per open bracket: "link" (a Markdown url), "flat" (dropped) or "kept"
    for i, ch in enumerate(text):
        if ch == "(":
            if (i and text[i - 1] == "]") or "link" in stack:
                kind = "link"
            elif stack:
                kind = "flat"
            else:
                kind = "kept"
            stack.append(kind)
            if kind == "flat":
                while out and out[-1] == " ":
                    out.pop()
                out.append(", ")
                continue
        elif ch == ")" and stack and stack.pop() == "flat":
            continue
        out.append(ch)
    return "".join(out)


def render_cards(evaluation: Evaluation, knowledge: Knowledge, hook_instance: str, patient_id: str,
                 missing_data: tuple[str, ...] = (), base_url: str = "",
                 override_reasons: tuple[tuple[str, str], ...] | None = None,
                 group_reasons: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
                 incomplete: frozenset[str] = frozenset()) -> list[Card]:
    """Cards for the findings, most urgent first: grouped findings share one card per group; plus one notice
    when unknown data silenced rules, when the drug of a draft order the call speaks about could not be identified,
    or when the rules met a lab result whose unit could not be read. `incomplete`: the missing kinds of which part
    arrived, named so."""
    reasons = knowledge.override_reasons if override_reasons is None else override_reasons
    groups: dict[str, list[Finding]] = {}
    orders: dict[str, list[Finding]] = {}  # draft id -> the findings about it (the first draft a finding names)
    cards = []
    for finding in evaluation.findings:
        if finding.rule.card.group:
            groups.setdefault(finding.rule.card.group, []).append(finding)
        elif finding.drafts and knowledge.order_card:
            orders.setdefault(finding.drafts[0], []).append(finding)
        else:
            cards.append(_card(finding, knowledge, hook_instance, patient_id))
    for draft_id, findings in orders.items():
        cards.append(_order_card(draft_id, findings, knowledge, hook_instance, patient_id) if len(findings) > 1
                     else _card(findings[0], knowledge, hook_instance, patient_id))
    cards += [_group_card(group, findings, knowledge, hook_instance, patient_id) for group, findings in groups.items()]
    for card in cards:
        # a card offers the reasons of its rules' folder: a work-up card is not an interaction
        folder = knowledge.rules[card.rules[0]].group
        card.override_reasons = [{"system": OVERRIDE_SYSTEM, "code": code, "display": display}
                                 for code, display in (group_reasons or {}).get(folder, reasons)]
    if base_url:
        for card in cards:
            _link_rule_pages(card, base_url.rstrip("/"), knowledge)
    rank = knowledge.urgency
    cards.sort(key=lambda c: (_ORDER[c.indicator], min(rank.get(r, len(rank)) for r in c.rules)))
    unread = evaluation.unread_labs if knowledge.missing_data_card and \
        knowledge.missing_data_card.get("unread_lab") else ()
    if knowledge.missing_data_card and (evaluation.unchecked_drafts or unread
                                        or (evaluation.silenced and missing_data)):
        cards.append(_missing_data_card(knowledge, hook_instance, patient_id,
                                        missing_data if evaluation.silenced else (),
                                        len(evaluation.silenced), evaluation.unchecked_drafts, unread, incomplete))
    return cards


def card_id(hook_instance: str, patient_id: str, key: str) -> str:
    """A card's uuid: stable for the same hook instance, patient and finding (so a repeat is the same card), and
    different for another patient even when an EHR reuses a hookInstance (feedback must never reach the wrong
    patient's card)."""
    return str(uuid.uuid5(CARD_NAMESPACE, f"{hook_instance}|{patient_id}|{key}"))


def _card(finding: Finding, knowledge: Knowledge, hook_instance: str, patient_id: str) -> Card:
    rule = finding.rule
    card_uuid = card_id(hook_instance, patient_id, finding.key)
    names, dx = knowledge.proper_names, _diagnoses(rule)
    summary = _clip(fill(rule.card.summary, finding.fields, names, diagnoses=dx), knowledge.max_summary_chars)
    detail = f"{fill(rule.card.detail, finding.fields, names, diagnoses=dx)}\n\n{_cite(rule.sources, knowledge)}"
    card = _frame(card_uuid, summary, rule.severity, detail, knowledge, rule.sources[0],
                  (RULE_TOPIC_SYSTEM, rule.id, rule.title), [finding], {"evidence": rule.evidence})
    card.rule = rule.id
    card.order = finding.drafts[0] if finding.drafts else None
    _add_suggestions(card, [finding], knowledge, patient_id)
    if rule.card.links:
        card.links = [{"label": label, "url": url, "type": "absolute"} for label, url in rule.card.links]
    return card


def _by_urgency(findings: list[Finding], knowledge: Knowledge) -> list[Finding]:
    rank = knowledge.urgency
    return sorted(findings, key=lambda f: (_ORDER[f.rule.severity], rank.get(f.rule.id, len(rank))))


def _sections(findings: list[Finding], knowledge: Knowledge) -> list[str]:
    """Each finding as a section of a shared card: its summary in bold, then its detail."""
    names = knowledge.proper_names
    return [f"**{_clip(fill(f.rule.card.summary, f.fields, names, diagnoses=_diagnoses(f.rule)), 10_000)}**"
            f"\n\n{fill(f.rule.card.detail, f.fields, names, diagnoses=_diagnoses(f.rule))}" for f in findings]


def _order_card(draft_id: str, findings: list[Finding], knowledge: Knowledge, hook_instance: str,
                patient_id: str) -> Card:
    """Several findings about one draft order: one card, a section each (most urgent first), one removal."""
    template = knowledge.order_card
    assert template is not None
    findings = _by_urgency(findings, knowledge)
    first = findings[0]
    head = _clip(fill(first.rule.card.summary, first.fields, knowledge.proper_names, diagnoses=_diagnoses(first.rule)),
                 10_000)
    fields = {"order.more": str(len(findings) - 1), "order.count": str(len(findings))}
    frame = fill(template["summary"], fields)
    room = knowledge.max_summary_chars - (len(frame) - len("{order.first}"))
    if len(head) > room:
        head = head[: room - 1].rstrip(" ,;:") + "…"
    summary = _clip(frame.replace("{order.first}", head), knowledge.max_summary_chars)
    sources = tuple(dict.fromkeys(s for f in findings for s in f.rule.sources))
    detail = "\n\n".join([fill(template["detail"], fields), *_sections(findings, knowledge),
                           _cite(sources, knowledge)])
    card_uuid = card_id(hook_instance, patient_id, f"order:{draft_id}")
    card = _frame(card_uuid, summary, first.rule.severity, detail, knowledge, first.rule.sources[0],
                  (RULE_TOPIC_SYSTEM, first.rule.id, first.rule.title), findings,
                  {"evidence": {f.rule.id: f.rule.evidence for f in findings}})
    card.order = draft_id
    _add_suggestions(card, findings, knowledge, patient_id)
    return card


def _group_card(group: str, findings: list[Finding], knowledge: Knowledge, hook_instance: str,
                patient_id: str) -> Card:
    template = knowledge.card_groups[group]
    findings = _by_urgency(findings, knowledge)
    names = knowledge.proper_names
    shorts = [fill(f.rule.card.short or f.rule.title, f.fields, names, opens_sentence=False,
                   diagnoses=_diagnoses(f.rule)) for f in findings]
    orders = list(dict.fromkeys(knowledge.concepts[cid].label for f in findings if f.rule.card.suggest_missing_labs
                                for cid in f.missing_labs))
    summary = _group_summary(template["summary"], shorts, knowledge.max_summary_chars, ", ".join(orders))
    sources = tuple(dict.fromkeys(s for f in findings for s in f.rule.sources))
    intro = fill(template["detail"], {"group.count": str(len(findings))})
    detail = "\n\n".join([intro, *_sections(findings, knowledge), _cite(sources, knowledge)])
    card_uuid = card_id(hook_instance, patient_id, f"group:{group}")
    card = _frame(card_uuid, summary, findings[0].rule.severity, detail, knowledge, findings[0].rule.sources[0],
                  (GROUP_TOPIC_SYSTEM, group, group), findings,
                  {"evidence": {f.rule.id: f.rule.evidence for f in findings}})
    card.group = group
    _add_suggestions(card, findings, knowledge, patient_id)
    return card


def _diagnoses(rule) -> frozenset[str]:
    """The placeholder names under which this rule's condition criteria put a diagnosis."""
    return frozenset(c.alias or "condition" for c in rule.include if c.kind == "condition")


def _link_rule_pages(card: Card, base_url: str, knowledge: Knowledge) -> None:
    """The timeline app when a rule offers it (smart_link.py), then the rule's own links, then an absolute link to
    each rule's knowledge page."""
    rules = card.rules
    links = [{"label": f"Why this card: {knowledge.rules[r].title}" if len(rules) > 1 else "Why this card",
              "url": f"{base_url}/knowledge/{r}", "type": "absolute"} for r in rules]
    app = smart_link(rules, base_url, knowledge)
    card.links = ([app] if app else []) + card.links + links


def _group_summary(template: str, items: list[str], limit: int, orders: str = "") -> str:
    """The group summary listing as many items as fit, then 'and N more'; {group.orders} lists each test once."""
    for shown in range(len(items), 0, -1):
        listed = "; ".join(items[:shown]) + (f"; and {len(items) - shown} more" if shown < len(items) else "")
        text = fill(template, {"group.count": str(len(items)), "group.items": listed, "group.orders": orders})
        if len(text) <= limit:
            return text
    return _clip(fill(template, {"group.count": str(len(items)), "group.items": items[0], "group.orders": orders}),
                 limit)


def _frame(card_uuid: str, summary: str, indicator: str, detail: str, knowledge: Knowledge, source_id: str,
           topic: tuple[str, str, str], findings: list[Finding], details: dict[str, Any]) -> Card:
    source = knowledge.sources[source_id]
    return Card(card_uuid, summary, indicator, detail,
                {"label": f"spasm-cds: {source.label}", **({"url": source.url} if source.url else {}),
                 "topic": {"system": topic[0], "code": topic[1], "display": topic[2]}},
                rules=tuple(f.rule.id for f in findings), rule_versions={f.rule.id: f.rule.version for f in findings},
                details=details)


def _cite(source_ids, knowledge: Knowledge) -> str:
    cited = (knowledge.sources[s] for s in source_ids)
    return "*Sources:* " + "; ".join(f"[{s.label}]({s.url})" if s.url else f"{s.label} ({s.citation})" for s in cited)


def _add_suggestions(card: Card, findings: list[Finding], knowledge: Knowledge, patient_id: str) -> None:
    """One order per missing lab across the findings that ask for them (each lab once); or the removal of the
    draft order that triggered the card (the clinician picks at most one)."""
    loinc_uri = knowledge.systems["loinc"][0]
    wanted: dict[str, Finding] = {}  # lab concept id -> the first finding asking for it
    removals: dict[str, tuple[str, str]] = {}  # draft id -> (drug name, the first rule asking for its removal)
    for f in findings:
        if f.rule.card.suggest_missing_labs:
            for cid in f.missing_labs:
                wanted.setdefault(cid, f)
        for cid in f.rule.card.suggest_labs:
            wanted.setdefault(cid, f)
        if f.rule.card.suggest_remove_draft:
            for draft_id in f.drafts:
                removals.setdefault(draft_id, (f.fields.get("draft.name", "the drug"), f.rule.id))
    suggestions = []
    for cid, finding in wanted.items():
        suggestions.append(order_lab_suggestion(knowledge.concepts[cid], patient_id, loinc_uri, card.uuid,
                                                finding.rule.title))
        card.offered[suggestions[-1]["uuid"]] = {"rule": finding.rule.id, "kind": f"order-lab:{cid}",
                                                 "label": suggestions[-1]["label"]}
    # a draft without an id cannot be named in a delete action ("MedicationRequest/" would delete nothing, or the
    # wrong thing): the card still warns, without the button
    for draft_id, (name, rule_id) in removals.items():
        if draft_id:
            suggestions.append(remove_draft_suggestion(draft_id, name, card.uuid))
            # the draft's id is the patient's record: the kind says only that a draft was removed
            card.offered[suggestions[-1]["uuid"]] = {"rule": rule_id, "kind": "remove-draft",
                                                     "label": suggestions[-1]["label"]}
    if suggestions:
        card.suggestions = suggestions
        card.selection_behavior = "at-most-one" if removals and not wanted else "any"


def _missing_data_card(knowledge: Knowledge, hook_instance: str, patient_id: str, kinds: tuple[str, ...],
                       skipped: int,
                       unchecked_drafts: tuple[str, ...] = (), unread_labs: tuple[str, ...] = (),
                       incomplete: frozenset[str] = frozenset()) -> Card:
    """The notice: which data could not be retrieved or read, or (first, being about the order itself) which draft
    orders could not be checked because their drug could not be identified."""
    template = knowledge.missing_data_card
    named = [template["incomplete"].replace("{data}", template["labels"].get(k, k)) if k in incomplete
             else template["labels"].get(k, k) for k in kinds]
    named += [template["unread_lab"].replace("{lab}", knowledge.concepts[cid].label) for cid in unread_labs]
    fields = {"missing.data": ", ".join(named), "missing.count": str(skipped),
              "missing.orders": str(len(unchecked_drafts))}
    summary, detail = template["summary"], template["detail"]
    missing = kinds
    details: dict[str, Any] = {}
    if unread_labs:
        details["unreadLabs"] = list(unread_labs)
    if incomplete & set(kinds):
        details["incompleteData"] = [k for k in kinds if k in incomplete]
    if unchecked_drafts:
        orders = template["unidentified_orders"]
        summary = orders["summary"]
        detail = f"{orders['detail']}\n\n{detail}" if named else orders["detail"]
        missing = (*kinds, DRAFT_ORDERS)
        details["uncheckedOrders"] = list(unchecked_drafts)
    return Card(card_id(hook_instance, patient_id, "missing-data"),
                _clip(fill(summary, fields), knowledge.max_summary_chars), "info", fill(detail, fields),
                {"label": "spasm-cds"}, missing_data=missing, details=details)


def _clip(text: str, limit: int) -> str:
    """A summary starts with a capital (a drug name may lead) and fits the limit."""
    text = text[:1].upper() + text[1:]
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
