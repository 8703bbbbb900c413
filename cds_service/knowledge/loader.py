"""Read mappings/ and cards/, validate every file against its schema, and build a frozen Knowledge.

All problems are gathered and raised together as KnowledgeError (file and field named in each)."""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .. import schemas
from ..errors import KnowledgeError
from ..evaluate.criteria import KINDS, kind_of
from ..vocabulary import DataKind, Hook
from . import lint
from .identity import build_cases as build_identity_cases
from .identity import concept_problems as identity_concept_problems
from .model import (
    AlternateUnit,
    CardTemplate,
    Case,
    Concept,
    ConfigOption,
    Correction,
    Criterion,
    DataQuery,
    Knowledge,
    LabSpec,
    OverrideEffect,
    RepeatWindows,
    Rule,
    Service,
    SmartLink,
    Source,
)
from .rxnorm_table import read_rows

CONCEPT_DOMAINS = {"medications": "medication", "labs": "lab", "conditions": "condition"}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _flatten(criteria) -> list[Criterion]:
    """The criteria and, for `any`, the criteria inside it."""
    out: list[Criterion] = []
    for c in criteria:
        out.append(c)
        out.extend(_flatten(c.any_of))
    return out


def schema_problems(doc: Any, name: str, where: str) -> list[str]:
    """Every schema violation of a knowledge file, as 'file: path: message' lines; a criterion that matches no
    kind says which kinds there are."""
    kinds = [k.name + "".join(f" (with {r})" for r in k.schema["required"][1:]) for k in KINDS.values()]
    return schemas.schema_problems(doc, name, where, one_of=f"not a valid criterion: use exactly one of "
                                   f"{', '.join(kinds)}, and only their own fields")


_UNREADABLE = object()


def _read_yaml(path: Path, root: Path, problems: list[str]) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        problems.append(" ".join(f"{path.relative_to(root)}: cannot be read as YAML: {exc}".split()))
        return _UNREADABLE


def load_knowledge(root: Path, units=None) -> Knowledge:
    """Load and check the knowledge under root (which holds cards/ and mappings/). Raises KnowledgeError."""
    from ..terminology import DosingTable, RouteTable, Terminology, UnitConverter

    root = Path(root)
    problems: list[str] = []
    raw = _read_all(root, problems)
    if problems:
        raise KnowledgeError(problems)
    units = units or UnitConverter(raw["units"].get("aliases", {}))
    concepts = _build_concepts(raw["concepts"])
    rules = _build_rules(raw["rules"], concepts, units, problems, raw["dosing"]["units"]["mass"])
    cases = _build_cases(raw["cases"], rules)
    sources = {sid: Source(sid, s["label"], s["citation"], s.get("url", ""), s.get("background", False))
               for sid, s in raw["sources"]["sources"].items()}
    services = _build_services(raw["services"], rules, concepts, raw["systems"], _build_options(raw["services"]))
    problems += lint.check(raw, concepts, rules, cases, sources, services, units)
    try:
        products = {row.rxcui: row for row in read_rows(root / "mappings" / "rxnorm" / "product-ingredient.tsv")}
    except (OSError, ValueError) as exc:
        problems.append(f"mappings/rxnorm/product-ingredient.tsv: {exc}")
        products = {}
    routes = RouteTable.from_doc(raw["routes"])
    problems += lint.check_medication_codes(raw["concepts"], products, routes)
    identity_cases = build_identity_cases(raw["identity_cases"])
    problems += identity_concept_problems(identity_cases, concepts)
    if problems:
        raise KnowledgeError(problems)
    systems = {k: tuple(v) for k, v in raw["systems"].items()}
    policy = raw["policy"]
    return Knowledge(
        concepts=MappingProxyType(concepts), rules=MappingProxyType(rules), cases=tuple(cases),
        sources=MappingProxyType(sources), services=MappingProxyType(services),
        systems=MappingProxyType(systems),
        override_reasons=tuple((r["code"], r["display"]) for r in raw["services"]["override_reasons"]),
        forbidden=tuple((f["pattern"], f["why"]) for f in policy["forbidden"]),
        max_summary_chars=policy.get("max_summary_chars", 140),
        proper_names=frozenset(policy.get("proper_names", ())),
        product_ingredients=MappingProxyType({code: row.ingredients for code, row in products.items()}),
        missing_data_card=MappingProxyType(raw["services"]["missing_data_card"]),
        card_groups=MappingProxyType({k: MappingProxyType(v) for k, v in
                                      (raw["services"].get("card_groups") or {}).items()}),
        terminology=Terminology(concepts, systems, MappingProxyType(products), units, routes,
                                DosingTable.from_doc(raw["dosing"], units), _dose_concepts(rules)),
        override_effects=MappingProxyType({r["code"]: OverrideEffect(r["effect"], r.get("days"))
                                           for r in raw["services"]["override_reasons"] if "effect" in r}),
        repeat_windows=_build_repeat_windows(raw["services"].get("repeat_windows")),
        configuration_options=MappingProxyType(_build_options(raw["services"])),
        identity_cases=identity_cases,
        urgency=MappingProxyType(_build_urgency(raw["services"].get("card_order"), rules)),
        order_card=MappingProxyType(raw["services"]["order_card"]) if raw["services"].get("order_card") else None)


def _dose_concepts(rules: dict[str, Rule]) -> frozenset[str]:
    """The concepts of every criterion (nested ones included) that tests a daily dose."""
    found: set[str] = set()
    pending = [c for rule in rules.values() for c in (*rule.include, *rule.exclude)]
    while pending:
        criterion = pending.pop()
        pending.extend(criterion.any_of)
        if criterion.dose_above is not None:
            found.update(criterion.concepts)
    return frozenset(found)


def _build_urgency(doc: dict | None, rules: dict[str, Rule]) -> dict[str, int]:
    """Rule id -> rank among cards of one indicator: the listed rules first, then each folder in turn, in the
    order of card_order.groups (folders not named last); within a folder, by rule id."""
    doc = doc or {"rules": [], "groups": []}
    listed = list(doc["rules"])
    folders = {g: i for i, g in enumerate(doc["groups"])}
    rest = sorted((r for r in rules if r not in listed),
                  key=lambda r: (folders.get(rules[r].group, len(folders)), r))
    return {rid: rank for rank, rid in enumerate([*listed, *rest]) if rid in rules}


def _read_all(root: Path, problems: list[str]) -> dict[str, Any]:
    raw: dict[str, Any] = {"concepts": [], "rules": [], "cases": []}
    singles = {"systems": ("mappings/systems.yaml", "systems"), "units": ("mappings/units.yaml", "units"),
               "routes": ("mappings/routes.yaml", "routes"), "dosing": ("mappings/dosing.yaml", "dosing"),
               "identity_cases": ("mappings/identity-cases.yaml", "identity-cases"),
               "sources": ("cards/sources.yaml", "sources"), "policy": ("cards/policy.yaml", "policy"),
               "services": ("cards/services.yaml", "services")}
    for name, (rel, schema) in singles.items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        doc = _read_yaml(path, root, problems)
        if doc is not _UNREADABLE:
            problems += schema_problems(doc, schema, rel)
        raw[name] = doc
    for folder, domain in CONCEPT_DOMAINS.items():
        for path in sorted((root / "mappings" / folder).rglob("*.yaml")):
            rel = str(path.relative_to(root))
            doc = _read_yaml(path, root, problems)
            if doc is _UNREADABLE:
                continue
            problems += schema_problems(doc, "concept", rel)
            raw["concepts"].append((rel, path.stem, domain, doc))
    cards = root / "cards"
    for path in sorted(cards.glob("*/*.yaml")):
        rel = str(path.relative_to(root))
        doc = _read_yaml(path, root, problems)
        if doc is _UNREADABLE:
            continue
        if path.name.endswith(".cases.yaml"):
            problems += schema_problems(doc, "cases", rel)
            raw["cases"].append((rel, path.name[: -len(".cases.yaml")], doc))
        else:
            problems += schema_problems(doc, "rule", rel)
            raw["rules"].append((rel, path.stem, path.parent.name, doc))
    return raw


def _build_concepts(entries) -> dict[str, Concept]:
    concepts: dict[str, Concept] = {}
    for _rel, _stem, domain, doc in entries:
        lab = None
        if "lab" in doc:
            spec, rng, order = doc["lab"], doc["lab"]["fallback_range"], doc["lab"].get("order") or {}
            fix = spec.get("correction")
            lab = LabSpec(spec["canonical_unit"], spec.get("molar_mass_g_per_mol"), spec.get("valence"),
                          rng.get("low"), rng.get("high"), order.get("loinc"), order.get("display"),
                          Correction(fix["by"], fix["factor"], fix["reference"]) if fix else None,
                          tuple(spec.get("accepted_units", ())),
                          tuple(AlternateUnit(a["unit"], a["scale"], a.get("offset", 0.0))
                                for a in spec.get("alternate_units", ())))
        concepts.setdefault(doc["id"], Concept(
            id=doc["id"], domain=domain, label=doc["label"],
            codes=MappingProxyType({k: tuple(v) for k, v in doc.get("codes", {}).items()}),
            ingredients=tuple(doc.get("ingredients", ())), lab=lab, sources=tuple(doc["sources"]),
            routes=tuple(doc.get("routes", ())), except_with=tuple(doc.get("except_with", ())),
            max_age_days=doc.get("max_age_days")))
    return concepts


def _criterion(raw: dict, concepts: dict[str, Concept], units, where: str, problems: list[str],
               dose_unit: str = "") -> Criterion:
    kind = kind_of(raw)
    value = raw[kind.name]
    ids = tuple([value] if isinstance(value, str) else value) if kind.concepts else ()
    bounds: dict[str, float | None] = {"below": None, "above": None}
    for side in bounds:
        if side in raw:
            lab = concepts.get(ids[0]) if ids else None
            if lab is None or lab.lab is None:
                continue  # lint reports the unknown lab
            q = raw[side]
            converted = units.convert(q["value"], q["unit"], lab.lab.canonical_unit,
                                      lab.lab.molar_mass_g_per_mol, lab.lab.valence)
            if converted is None:
                problems.append(f"{where}.{side}.unit: {q['unit']!r} cannot be converted to "
                                f"{lab.lab.canonical_unit!r} for {lab.id}")
            bounds[side] = converted
    dose_above = None
    if "daily_dose" in raw:
        q = raw["daily_dose"]["above"]
        dose_above = units.convert(q["value"], q["unit"], dose_unit)
        if dose_above is None:
            problems.append(f"{where}.daily_dose.above.unit: {q['unit']!r} cannot be converted to {dose_unit!r} "
                            "(mappings/dosing.yaml units.mass)")
    age = raw.get("age") or {}
    any_of = tuple(_criterion(sub, concepts, units, f"{where}.any[{i}]", problems, dose_unit)
                   for i, sub in enumerate(raw.get("any") or ()))
    return Criterion(kind=kind.name, concepts=ids, value=_frozen(value), alias=raw.get("as", ""),
                     within_days=raw.get("within_days"),
                     flag=raw.get("flag"), below=bounds["below"], above=bounds["above"],
                     age_at_least=age.get("at_least"), age_below=age.get("below"), sex=raw.get("sex"),
                     times_uln=raw.get("times_uln"), corrected=bool(raw.get("corrected")),
                     since_days=raw.get("since_days"), any_of=any_of, with_drafts=bool(raw.get("with_drafts")),
                     different_from=raw.get("different_from", ""), ignore_unknown=raw.get("if_unknown") == "ignore",
                     confirmed=raw.get("confirmed") is True, dose_above=dose_above)


def _frozen(value: Any) -> Any:
    """A YAML value made immutable (lists become tuples, mappings read-only), for a kind that reads it whole."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def _build_rules(entries, concepts, units, problems, dose_unit: str = "") -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for rel, _stem, group, doc in entries:
        crit = {part: tuple(_criterion(c, concepts, units, f"{rel}: {part}[{i}]", problems, dose_unit)
                            for i, c in enumerate(doc.get(part) or ())) for part in ("include", "exclude")}
        card = doc["card"]
        rules.setdefault(doc["id"], Rule(
            id=doc["id"], group=group, title=doc["title"], hooks=tuple(doc["hooks"]),
            severity=doc["grading"]["severity"], evidence=doc["grading"]["evidence"],
            sources=tuple(doc["sources"]), rationale=doc["rationale"].strip(),
            include=crit["include"], exclude=crit["exclude"], version=int(doc.get("version", 1)),
            card=CardTemplate(summary=card["summary"].strip(), detail=card["detail"].strip(),
                              suggest_missing_labs=bool(card.get("suggest_missing_labs")),
                              links=tuple((link["label"], link["url"]) for link in card.get("links", ())),
                              group=card.get("group"), short=card.get("short"),
                              suggest_remove_draft=bool(card.get("suggest_remove_draft")),
                              suggest_labs=tuple(card.get("suggest_labs") or ()),
                              smart_link=_smart_link(card.get("smart_link")))))
    return rules


def _smart_link(raw: dict[str, Any] | None) -> SmartLink | None:
    if not raw:
        return None
    return SmartLink(label=raw["label"], labs=tuple(raw["labs"]), medications=tuple(raw.get("medications") or ()))


def _build_cases(entries, rules) -> list[Case]:
    cases: list[Case] = []
    for _rel, _stem, doc in entries:
        defaults = doc.get("defaults") or {}
        rule = rules.get(doc["rule"])
        for c in doc["cases"]:
            chart = dict(defaults)
            for key, value in c.items():
                if key in ("name", "expect", "hook", "summary_contains", "detail_contains", "suggestions", "note",
                           "notice_contains", "cards", "smart_link"):
                    continue
                chart[key] = value  # a case's own value replaces the default
            hook = c.get("hook") or (rule.hooks[0] if rule else Hook.PATIENT_VIEW)
            cases.append(Case(rule=doc["rule"], name=c["name"], expect=c["expect"], hook=hook,
                              chart=MappingProxyType(chart),
                              summary_contains=tuple(c.get("summary_contains", ())),
                              detail_contains=tuple(c.get("detail_contains", ())),
                              suggestions=tuple(c["suggestions"]) if "suggestions" in c else None,
                              notice=c.get("notice"),
                              notice_contains=tuple(c.get("notice_contains", ())),
                              cards=c.get("cards"), smart_link=c.get("smart_link")))
    return cases


def _build_repeat_windows(doc: dict | None) -> RepeatWindows:
    doc = doc or {}
    return RepeatWindows(MappingProxyType(dict(doc.get("days") or {})),
                         MappingProxyType(dict(doc.get("groups") or {})),
                         MappingProxyType(dict(doc.get("rules") or {})))


def _build_options(doc) -> dict[str, ConfigOption]:
    options = {}
    for o in doc.get("configuration_options") or ():
        shows = o.get("shows") or {}
        options[o["code"]] = ConfigOption(
            code=o["code"], type=o["type"], name=o["name"], description=" ".join(o["description"].split()),
            default=o["default"], indicator=shows.get("indicator"), rule_group=shows.get("rule_group"),
            limits=o.get("limits"), minimum=o.get("minimum"), maximum=o.get("maximum"))
    return options


def _build_services(doc, rules, concepts, systems, options: dict[str, ConfigOption]) -> dict[str, Service]:
    loinc_uri = systems["loinc"][0]
    catalogue = {r["code"]: r["display"] for r in doc["override_reasons"]}
    queries = {kind: DataQuery(kind, q["key"], q["template"]) for kind, q in doc["data"].items()}
    services: dict[str, Service] = {}
    for s in doc["services"]:
        chosen = tuple(r for r in rules.values() if r.group in s["rule_groups"] and s["hook"] in r.hooks)
        kinds: set[str] = {DataKind.CONDITIONS} if s.get("gate") else set()
        labs: set[str] = set()
        for rule in chosen:
            for c in _flatten(rule.include + rule.exclude):
                kinds.update(KINDS[c.kind].reads)
                if KINDS[c.kind].concepts == "lab":
                    labs.update(c.concepts)
                    labs.update(concepts[lab].lab.correction.by for lab in c.concepts
                                if lab in concepts and concepts[lab].lab and concepts[lab].lab.correction)
        codes = sorted({code for lab in labs if lab in concepts for code in concepts[lab].codes.get("loinc", ())})
        needed = tuple(queries[k] for k in queries if k in kinds)
        rendered = tuple(DataQuery(q.kind, q.key, q.template.replace(
            "{codes}", ",".join(f"{loinc_uri}|{c}" for c in codes))) for q in needed)
        overrides = s.get("prefetch") or {}
        rendered = tuple(DataQuery(q.kind, q.key, overrides.get(q.key, q.template)) for q in rendered)
        prefetch = {q.key: q.template for q in rendered}
        services[s["id"]] = Service(
            id=s["id"], hook=s["hook"], title=s["title"], description=s["description"].strip(),
            usage_requirements=(s.get("usageRequirements") or "").strip() or None, rules=chosen,
            gate_conditions=tuple((s.get("gate") or {}).get("condition", ())), queries=rendered,
            required_data=frozenset(s.get("required_data", ())), prefetch=MappingProxyType(dict(prefetch)),
            override_reasons=tuple((code, catalogue[code]) for code in s.get("override_reasons", catalogue)
                                   if code in catalogue),
            group_override_reasons=MappingProxyType({
                group: tuple((code, catalogue[code]) for code in codes if code in catalogue)
                for group, codes in (doc.get("override_reasons_by_rule_group") or {}).items()
                if group in s["rule_groups"]}),
            deduplicate=bool(s.get("deduplicate")),
            skip_shown_at=((s["skip_cards_shown_at"]["service"], s["skip_cards_shown_at"]["within_minutes"])
                           if "skip_cards_shown_at" in s else None),
            configuration=tuple(options[code] for code in s.get("configuration", ()) if code in options),
            hook_version=s.get("hookVersion"), specification_version=doc.get("specification_version"))
    return services
