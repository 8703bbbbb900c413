"""Cross-file checks of the knowledge (ids, references, cases, placeholders, policy), gathered, never first-only.

Used by the loader at start-up, by `spasm-cds lint`, and by the knowledge tests."""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ..evaluate.criteria import alias_of, kind_of, placeholder_fields
from ..vocabulary import DataKind, Hook
from .model import PLACEHOLDER, Case, Concept, Rule, Service, Source
from .templates import unknown_tokens


def check(raw: dict[str, Any], concepts: dict[str, Concept], rules: dict[str, Rule], cases: list[Case],
          sources: dict[str, Source], services: dict[str, Service], units) -> list[str]:
    """All cross-file problems, each naming the file and the field."""
    problems: list[str] = []
    problems += _check_concepts(raw["concepts"], sources, units)
    problems += _check_rules(raw["rules"], concepts, sources, raw["policy"], raw["services"].get("card_groups"))
    problems += _check_cases(raw["cases"], rules, cases)
    problems += _check_services(raw["services"], rules, concepts)
    problems += _check_site_options(raw["services"], rules)
    problems += _check_notice(raw["services"].get("missing_data_card"), raw["policy"])
    problems += _check_order_card(raw["services"].get("order_card"), raw["policy"])
    problems += _check_dosing(raw.get("dosing") or {}, sources, units)
    return problems


def _check_dosing(doc: dict, sources, units) -> list[str]:
    """mappings/dosing.yaml: its units are units (the mass unit a mass, a strength unit convertible to it), each
    timing's period converts to days, and its sources exist."""
    problems: list[str] = []
    where = "mappings/dosing.yaml"
    names = doc.get("units") or {}
    mass, volume, day = names.get("mass", ""), names.get("volume", ""), names.get("day", "")
    for i, sid in enumerate(doc.get("sources") or ()):
        if sid not in sources:
            problems.append(f"{where}: sources[{i}]: {sid!r} is not in cards/sources.yaml")
    for key, unit in names.items():
        if not units.check(unit):
            problems.append(f"{where}: units.{key}: {unit!r} is not UCUM")
    for field, target in (("strength_units", mass), ("strength_volume_units", volume)):
        for key, unit in (doc.get(field) or {}).items():
            if units.convert(1.0, unit, target) is None:
                problems.append(f"{where}: {field}.{key}: {unit!r} does not convert to {target!r}")
    coded = (doc.get("timing_codes") or {}).get("codes") or {}
    timings = {**{f"timing_codes.codes.{k}": v for k, v in coded.items()},
               **{f"timing_texts.{k}": v for k, v in (doc.get("timing_texts") or {}).items()}}
    for key, spec in timings.items():
        if not units.convert(float(spec["period"]), spec["unit"], day):
            problems.append(f"{where}: {key}.unit: {spec['unit']!r} does not convert to {day!r}")
    for i, unit in enumerate((doc.get("presentation_units") or {}).get("ucum") or ()):
        if not units.check(unit) or units.convert(1.0, unit, mass) is not None:
            problems.append(f"{where}: presentation_units.ucum[{i}]: {unit!r} must be a UCUM count, not a mass")
    return problems


def unused_sources(rules: Mapping[str, Rule], concepts: Mapping[str, Concept], sources: Mapping[str, Source],
                   also_cited: tuple[str, ...] = ()) -> list[str]:
    """Bibliography entries no rule or concept (nor `also_cited`: mappings/dosing.yaml's) cites (a warning)."""
    cited = {s for r in rules.values() for s in r.sources} | {s for c in concepts.values() for s in c.sources}
    cited |= set(also_cited)
    return sorted(sid for sid in set(sources) - cited if not sources[sid].background)


def _check_concepts(entries, sources, units) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    loinc_owner: dict[str, str] = {}
    for rel, stem, domain, doc in entries:
        cid = doc["id"]
        if cid != stem:
            problems.append(f"{rel}: id: {cid!r} must equal the file name {stem!r}")
        if cid in seen:
            problems.append(f"{rel}: id: {cid!r} is already used by {seen[cid]}")
        seen[cid] = rel
        if ("ingredients" in doc) != (domain == "medication"):
            problems.append(f"{rel}: ingredients: " + ("medications need ingredients" if domain == "medication"
                                                       else "only medications have ingredients"))
        if ("lab" in doc) != (domain == "lab"):
            problems.append(f"{rel}: lab: " + ("labs need a lab block" if domain == "lab"
                                               else "only labs have a lab block"))
        if domain == "lab" and "lab" in doc and not units.check(doc["lab"]["canonical_unit"]):
            problems.append(f"{rel}: lab.canonical_unit: {doc['lab']['canonical_unit']!r} is not UCUM")
        for i, alt in enumerate((doc.get("lab") or {}).get("alternate_units", ())):
            if not units.check(alt["unit"]):
                problems.append(f"{rel}: lab.alternate_units[{i}].unit: {alt['unit']!r} cannot be read as a unit "
                                "(see mappings/units.yaml)")
        fix = (doc.get("lab") or {}).get("correction")
        if fix and fix["by"] not in {d["id"] for _r, _s, dom, d in entries if dom == "lab"}:
            problems.append(f"{rel}: lab.correction.by: {fix['by']!r} is not a lab concept in mappings/labs/")
        if domain == "lab" and not doc.get("codes", {}).get("loinc"):
            problems.append(f"{rel}: codes.loinc: a lab needs at least one LOINC code")
        for code in doc.get("codes", {}).get("loinc", ()):
            if code in loinc_owner and loinc_owner[code] != cid:
                problems.append(f"{rel}: codes.loinc: {code} is also in {loinc_owner[code]}")
            loinc_owner[code] = cid
        for i, sid in enumerate(doc["sources"]):
            if sid not in sources:
                problems.append(f"{rel}: sources[{i}]: {sid!r} is not in cards/sources.yaml")
            elif sources[sid].background:
                problems.append(f"{rel}: sources[{i}]: {sid!r} is background reading, not an authority; "
                                f"cite the label, guideline or paper for this fact")
    return problems


def _check_rules(entries, concepts, sources, policy, card_groups) -> list[str]:
    problems: list[str] = []
    ids = Counter(doc["id"] for _rel, _stem, _group, doc in entries)
    forbidden = [(re.compile(f["pattern"], re.IGNORECASE), f["why"]) for f in policy["forbidden"]]
    for rel, stem, _group, doc in entries:
        rid = doc["id"]
        if rid != stem:
            problems.append(f"{rel}: id: {rid!r} must equal the file name {stem!r}")
        if ids[rid] > 1:
            problems.append(f"{rel}: id: {rid!r} is used by more than one rule")
        for i, sid in enumerate(doc["sources"]):
            if sid not in sources:
                problems.append(f"{rel}: sources[{i}]: {sid!r} is not in cards/sources.yaml")
            elif sources[sid].background:
                problems.append(f"{rel}: sources[{i}]: {sid!r} is background reading, not an authority; "
                                f"cite the label, guideline or paper for this fact")
        aliases: Counter[str] = Counter()
        for part in ("include", "exclude"):
            for i, crit in enumerate(doc.get(part) or ()):
                problems += _check_criterion(crit, concepts, f"{rel}: {part}[{i}]", doc)
                if part == "include" and not kind_of(crit).alias_shared:
                    aliases[alias_of(crit)] += 1
        for alias, n in aliases.items():
            if n > 1:
                problems.append(f"{rel}: include: {n} criteria share the placeholder name {alias!r}; "
                                f"give the others an `as:` name")
        allowed: set[str] = set()
        for crit in doc.get("include") or ():
            allowed.update(f"{alias_of(crit)}.{f}" for f in placeholder_fields(crit))
        for field in ("summary", "detail", "short"):
            text = doc["card"].get(field) or ""
            for m in PLACEHOLDER.finditer(text):
                if f"{m.group(1)}.{m.group(2)}" not in allowed:
                    problems.append(f"{rel}: card.{field}: unknown placeholder {m.group(0)}; "
                                    f"this rule offers {', '.join(sorted(allowed)) or 'none'}")
            stray = re.sub(PLACEHOLDER, "", text)
            if "{" in stray or "}" in stray:
                problems.append(f"{rel}: card.{field}: stray brace; placeholders look like {{lab.value}}")
            for pattern, why in forbidden:
                if pattern.search(text):
                    problems.append(f"{rel}: card.{field}: says {pattern.pattern!r}, which policy forbids: {why}")
        group = doc["card"].get("group")
        if group and group not in (card_groups or {}):
            problems.append(f"{rel}: card.group: {group!r} is not in cards/services.yaml card_groups")
        if group and not doc["card"].get("short"):
            problems.append(f"{rel}: card.short: a grouped card needs the short words its group card lists")
        if doc["card"].get("suggest_remove_draft") and not any("draft-order" in c for c in doc.get("include") or ()):
            problems.append(f"{rel}: card.suggest_remove_draft: needs a draft-order criterion in include")
        for lab in doc["card"].get("suggest_labs") or ():
            if lab not in concepts or not concepts[lab].lab:
                problems.append(f"{rel}: card.suggest_labs: {lab!r} is not a lab concept in mappings/labs")
            elif not concepts[lab].lab.order_loinc:
                problems.append(f"{rel}: card.suggest_labs: lab {lab!r} has no lab.order to suggest")
        smart = doc["card"].get("smart_link") or {}
        for field, domain in (("labs", "lab"), ("medications", "medication")):
            for cid in smart.get(field) or ():
                if cid not in concepts or concepts[cid].domain != domain:
                    problems.append(f"{rel}: card.smart_link.{field}: {cid!r} is not a {domain} concept in "
                                    f"mappings/{domain}s")
        if doc["card"].get("suggest_missing_labs"):
            include = doc.get("include") or ()
            # a missing-lab may stand alone or be one alternative of an `any` ("low, or not measured lately")
            missing = [c for c in include if "missing-lab" in c]
            missing += [alt for c in include for alt in c.get("any") or () if "missing-lab" in alt]
            if not missing:
                problems.append(f"{rel}: card.suggest_missing_labs: needs a missing-lab criterion in include "
                                f"(on its own or within any)")
            for crit in missing:
                for lab in crit["missing-lab"]:
                    if lab in concepts and concepts[lab].lab and not concepts[lab].lab.order_loinc:
                        problems.append(f"{rel}: card.suggest_missing_labs: lab {lab!r} has no lab.order to suggest")
    return problems


def _check_criterion(crit: dict, concepts, where: str, doc: dict) -> list[str]:
    problems: list[str] = []
    kind = kind_of(crit)
    if kind.concepts:
        value = crit[kind.name]
        for cid in [value] if isinstance(value, str) else value:
            concept = concepts.get(cid)
            if concept is None:
                problems.append(f"{where}.{kind.name}: {cid!r} is not a concept in mappings/")
            elif concept.domain != kind.concepts:
                problems.append(f"{where}.{kind.name}: {cid!r} is a {concept.domain}, not a {kind.concepts}")
    if kind.check:
        problems += kind.check(crit, concepts, where, doc)
    if crit.get("if_unknown") and ": include" in where:
        problems.append(f"{where}.if_unknown: only exclude criteria may ignore unknown data")
    for i, sub in enumerate(crit.get("any") or ()):
        problems += _check_criterion(sub, concepts, f"{where}.any[{i}]", doc)
    return problems


def _check_cases(entries, rules: dict[str, Rule], cases: list[Case]) -> list[str]:
    problems: list[str] = []
    files = {doc["rule"]: rel for rel, _stem, doc in entries}
    for rel, stem, doc in entries:
        if doc["rule"] != stem:
            problems.append(f"{rel}: rule: {doc['rule']!r} must equal the file name {stem!r}")
        if doc["rule"] not in rules:
            problems.append(f"{rel}: rule: {doc['rule']!r} is not a rule in cards/")
        names = Counter(c["name"] for c in doc["cases"])
        for name, n in names.items():
            if n > 1:
                problems.append(f"{rel}: cases: the name {name!r} is used {n} times")
    by_rule: dict[str, Counter[str]] = {}
    for case in cases:
        by_rule.setdefault(case.rule, Counter())[case.expect] += 1
    for rid, rule in rules.items():
        counts = by_rule.get(rid, Counter())
        where = files.get(rid)
        if where is None:
            problems.append(f"cards/{rule.group}/{rid}.yaml: cases: add cards/{rule.group}/{rid}.cases.yaml "
                            f"with at least one card and one no-card case")
            continue
        for expect in ("card", "no-card"):
            if counts[expect] < 1:
                problems.append(f"{where}: cases: rule {rid!r} needs at least one case with expect: {expect}")
        for case in cases:
            if case.rule == rid and case.hook not in rule.hooks:
                problems.append(f"{where}: cases: {case.name}: hook {case.hook!r} is not one of the rule's hooks")
    return problems


def _check_services(doc, rules: dict[str, Rule], concepts) -> list[str]:
    problems: list[str] = []
    groups = {r.group for r in rules.values()}
    seen: Counter[str] = Counter(s["id"] for s in doc["services"])
    covered: set[str] = set()
    catalogue = {r["code"] for r in doc["override_reasons"]}
    for group, codes in (doc.get("override_reasons_by_rule_group") or {}).items():
        where = f"cards/services.yaml: override_reasons_by_rule_group.{group}"
        if group not in groups:
            problems.append(f"{where}: {group!r} is not a folder of rules under cards/")
        for code in codes:
            if code not in catalogue:
                problems.append(f"{where}: {code!r} is not in the override_reasons catalogue")
    for kind, query in (doc.get("data") or {}).items():
        for token in unknown_tokens(str(query.get("template", ""))):
            problems.append(f"cards/services.yaml: data.{kind}.template: {token} is not a token this service fills "
                            "(context.patientId/userId/encounterId, the user* ids, today() with an optional +/- N "
                            "days/weeks/months/years)")
    for i, s in enumerate(doc["services"]):
        where = f"cards/services.yaml: services[{i}]"
        if seen[s["id"]] > 1:
            problems.append(f"{where}.id: {s['id']!r} is used twice")
        for g in s["rule_groups"]:
            if g not in groups:
                problems.append(f"{where}.rule_groups: {g!r} is not a folder of rules under cards/")
        covered.update(r.id for r in rules.values() if r.group in s["rule_groups"] and s["hook"] in r.hooks)
        for cid in (s.get("gate") or {}).get("condition", ()):
            if cid not in concepts or concepts[cid].domain != "condition":
                problems.append(f"{where}.gate.condition: {cid!r} is not a condition concept in mappings/")
        codes = {r["code"] for r in doc["override_reasons"]}
        for code in s.get("override_reasons", ()):
            if code not in codes:
                problems.append(f"{where}.override_reasons: {code!r} is not in the override_reasons catalogue")
        for key, template in (s.get("prefetch") or {}).items():
            for token in unknown_tokens(str(template)):
                problems.append(f"{where}.prefetch.{key}: {token} is not a token this service fills (context."
                                "patientId/userId/encounterId, the user* ids, today() with an optional +/- N "
                                "days/weeks/months/years)")
        if "hookVersion" in s and s["hook"] in set(Hook) and Hook(s["hook"]).version != s["hookVersion"]:
            problems.append(f"{where}.hookVersion: {s['hookVersion']!r} is not the version of the {s['hook']} hook "
                            f"definition ({Hook(s['hook']).version})")
        for kind in s.get("required_data", ()):
            if kind not in set(DataKind):
                problems.append(f"{where}.required_data: {kind!r} is not one of {sorted(map(str, DataKind))}")
            elif kind not in doc["data"]:
                problems.append(f"{where}.required_data: {kind!r} has no query under data:")
    for rid, rule in rules.items():
        if rid not in covered:
            problems.append(f"cards/{rule.group}/{rid}.yaml: no service in cards/services.yaml runs this rule")
    return problems


def _check_site_options(doc, rules: dict[str, Rule]) -> list[str]:
    """repeat_windows, configuration_options and the services' use of them name things that exist."""
    problems: list[str] = []
    where = "cards/services.yaml"
    windows = doc.get("repeat_windows") or {}
    for group in windows.get("groups") or {}:
        if group not in (doc.get("card_groups") or {}):
            problems.append(f"{where}: repeat_windows.groups: {group!r} is not one of card_groups")
    for rid in windows.get("rules") or {}:
        if rid not in rules:
            problems.append(f"{where}: repeat_windows.rules: {rid!r} is not a rule id")
    order = doc.get("card_order") or {}
    for rid in order.get("rules") or ():
        if rid not in rules:
            problems.append(f"{where}: card_order.rules: {rid!r} is not a rule id")
    folders = {r.group for r in rules.values()}
    for group in order.get("groups") or ():
        if group not in folders:
            problems.append(f"{where}: card_order.groups: {group!r} is not a rule folder")
    options = {}
    for i, o in enumerate(doc.get("configuration_options") or ()):
        if o["code"] in options:
            problems.append(f"{where}: configuration_options[{i}].code: {o['code']!r} is used twice")
        options[o["code"]] = o
        if o["type"] == "integer" and not o["minimum"] <= o["default"] <= o["maximum"]:
            problems.append(f"{where}: configuration_options[{i}].default: {o['default']} is not between "
                            f"minimum {o['minimum']} and maximum {o['maximum']}")
    hooks = {s["id"]: s["hook"] for s in doc["services"]}
    for i, s in enumerate(doc["services"]):
        for code in s.get("configuration", ()):
            group = (options.get(code) or {}).get("shows", {}).get("rule_group")
            if code not in options:
                problems.append(f"{where}: services[{i}].configuration: {code!r} is not in configuration_options")
            elif group and group not in s["rule_groups"]:
                problems.append(f"{where}: services[{i}].configuration: {code!r} shows rule group {group!r}, "
                                "which this service does not run")
        skip = s.get("skip_cards_shown_at")
        if skip and (s["hook"] != Hook.ORDER_SIGN or hooks.get(skip["service"]) != Hook.ORDER_SELECT):
            problems.append(f"{where}: services[{i}].skip_cards_shown_at: only an order-sign service can skip the "
                            "cards of an order-select service named in services")
    return problems


_NOTICE_FIELDS = {"missing.data", "missing.count", "missing.orders"}
ORDER_CARD_FIELDS = {"order.first", "order.more", "order.count"}


def _check_order_card(template: dict | None, policy: dict) -> list[str]:
    """The one-card-per-order template: known placeholders, nothing policy forbids, and room for the first summary."""
    problems: list[str] = []
    forbidden = [(re.compile(f["pattern"], re.IGNORECASE), f["why"]) for f in policy["forbidden"]]
    for field, text in (template or {}).items():
        where = f"cards/services.yaml: order_card.{field}"
        for m in PLACEHOLDER.finditer(text):
            if f"{m.group(1)}.{m.group(2)}" not in ORDER_CARD_FIELDS:
                problems.append(f"{where}: unknown placeholder {m.group(0)}; the order card offers "
                                f"{', '.join(sorted(ORDER_CARD_FIELDS))}")
        for pattern, why in forbidden:
            if pattern.search(text):
                problems.append(f"{where}: says {pattern.pattern!r}, which policy forbids: {why}")
    if template and "{order.first}" not in template["summary"]:
        problems.append("cards/services.yaml: order_card.summary: must show {order.first}")
    elif template and len(PLACEHOLDER.sub("99", template["summary"].replace("{order.first}", ""))) > 60:
        problems.append("cards/services.yaml: order_card.summary: leaves too little room for {order.first}")
    return problems


def _check_notice(template: dict | None, policy: dict) -> list[str]:
    """The missing-data notice is card text too: known placeholders only, nothing policy forbids, and the summary
    of an unchecked order fits (it is filled with a count only, so its length is known here)."""
    if not template:
        return []
    problems: list[str] = []
    forbidden = [(re.compile(f["pattern"], re.IGNORECASE), f["why"]) for f in policy["forbidden"]]
    orders = template.get("unidentified_orders") or {}
    texts = {"summary": template.get("summary", ""), "detail": template.get("detail", ""),
             **{f"unidentified_orders.{k}": v for k, v in orders.items()}}
    for field, text in texts.items():
        where = f"cards/services.yaml: missing_data_card.{field}"
        for m in PLACEHOLDER.finditer(text):
            if f"{m.group(1)}.{m.group(2)}" not in _NOTICE_FIELDS:
                problems.append(f"{where}: unknown placeholder {m.group(0)}; the notice offers "
                                f"{', '.join(sorted(_NOTICE_FIELDS))}")
        for pattern, why in forbidden:
            if pattern.search(text):
                problems.append(f"{where}: says {pattern.pattern!r}, which policy forbids: {why}")
    summary = PLACEHOLDER.sub("99", orders.get("summary", ""))
    if len(summary) > policy.get("max_summary_chars", 139):
        problems.append(f"cards/services.yaml: missing_data_card.unidentified_orders.summary: {len(summary)} "
                        f"characters once filled in; at most {policy.get('max_summary_chars', 139)}")
    return problems


def card_texts(knowledge) -> dict[str, str]:
    """Every piece of card text in the knowledge, keyed by where it lives."""
    texts = {}
    for rule in knowledge.rules.values():
        where = f"cards/{rule.group}/{rule.id}.yaml: card"
        texts[f"{where}.summary"] = rule.card.summary
        texts[f"{where}.detail"] = rule.card.detail
        texts[f"cards/{rule.group}/{rule.id}.yaml: rationale"] = rule.rationale
    for group, template in knowledge.card_groups.items():
        texts[f"cards/services.yaml: card_groups.{group}"] = f"{template['summary']} {template['detail']}"
    if knowledge.order_card:
        texts["cards/services.yaml: order_card"] = f"{knowledge.order_card['summary']} {knowledge.order_card['detail']}"
    return texts


def copied_runs(texts: dict[str, str], seed_texts: list[str], run_words: int = 10) -> list[str]:
    """Places where card text shares a run of `run_words` words with a seed article (card text must be our own)."""
    def runs(text: str) -> set[str]:
        words = re.findall(r"[a-z0-9']+", text.lower())
        return {" ".join(words[i:i + run_words]) for i in range(len(words) - run_words + 1)}

    seeds: set[str] = set()
    for text in seed_texts:
        seeds |= runs(text)
    problems = []
    for where, text in texts.items():
        common = sorted(runs(text) & seeds)
        if common:
            problems.append(f"{where}: shares {len(common)} ten-word run(s) with a seed article, e.g. "
                            f"{common[0]!r}; write it in your own words")
    return problems


def check_medication_codes(entries, products: dict[str, Any], routes) -> list[str]:
    """Every medication concept resolves by code: it lists RxNorm ingredient (IN) and salt (PIN) codes, each a row
    of the roll-up table that names one of its ingredients. The routes it and mappings/routes.yaml name exist."""
    problems: list[str] = []
    known_routes = set(routes.labels)
    for route in {*routes.snomed.values(), *(r for _p, r in routes.words)} - known_routes:
        problems.append(f"mappings/routes.yaml: route {route!r} is used but not listed under routes")
    for rel, _stem, domain, doc in entries:
        if domain != "medication":
            continue
        names = set(doc.get("ingredients") or ())
        codes = (doc.get("codes") or {}).get("rxnorm") or []
        if not codes and not doc.get("codes_unverified"):
            problems.append(f"{rel}: codes.rxnorm: a medication concept needs the RxNorm ingredient code (IN) of "
                            f"each ingredient, and PIN codes for salts; it has none")
        coded: set[str] = set()
        for i, code in enumerate(codes):
            row = products.get(code)
            if row is None or row.tty not in ("IN", "PIN", "MIN"):
                what = "is not in" if row is None else f"is a {row.tty} in"
                problems.append(f"{rel}: codes.rxnorm[{i}]: {code} {what} mappings/rxnorm/product-ingredient.tsv; "
                                f"list ingredient (IN) and salt (PIN) codes only")
            elif not set(row.ingredients) & names:
                problems.append(f"{rel}: codes.rxnorm[{i}]: {code} is {row.display!r}, not one of the ingredients")
            elif row.tty == "IN":
                coded.update(row.ingredients)
        for i, route in enumerate(doc.get("routes") or ()):
            if route not in known_routes:
                problems.append(f"{rel}: routes[{i}]: {route!r} is not a route in mappings/routes.yaml")
    return problems


def uncoded_ingredients(concepts: Mapping[str, Concept], products: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Ingredients of medication concepts whose ingredient (IN) code no concept lists (a warning: such a drug is
    still recognised by its product codes and its name, but not when an EHR sends the ingredient code)."""
    warnings = []
    for concept in concepts.values():
        coded = {n for code in concept.codes.get("rxnorm", ()) for n in products.get(code, ())}
        if concept.domain == "medication" and not concept.codes.get("rxnorm"):
            warnings.append(f"mappings/medications/{concept.id}.yaml: no RxNorm code verified: matched by name only")
            continue
        missing = sorted(set(concept.ingredients) - coded)
        if concept.domain == "medication" and missing:
            warnings.append(f"mappings/medications/{concept.id}.yaml: codes.rxnorm: no ingredient (IN) code for "
                            f"{', '.join(missing)}")
    return warnings


def suggestion_problems(concepts: Mapping[str, Concept], loinc_uri: str) -> list[str]:
    """Each ServiceRequest a work-up suggestion can propose (one per lab with lab.order), checked against
    fhir.resources' R4B model: it must validate and dump back unchanged. Run by `spasm-cds lint` and the knowledge
    tests, not at start: serving builds the resources as plain dicts and never imports the models (issue 16)."""
    from fhir.resources.R4B.servicerequest import ServiceRequest
    from pydantic import ValidationError

    from ..render.suggestions import service_request

    problems: list[str] = []
    for cid, concept in sorted(concepts.items()):
        spec = concept.lab
        if spec is None or spec.order_loinc is None or spec.order_display is None:
            continue
        resource = service_request(loinc_uri, spec.order_loinc, spec.order_display)
        try:
            dumped = ServiceRequest.model_validate(resource).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            problems.append(f"mappings/labs/{cid}.yaml: lab.order: the ServiceRequest it proposes is not valid FHIR "
                            f"R4: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
            continue
        if json.dumps(dumped) != json.dumps(resource):  # key order too: the service sends these bytes
            problems.append(f"mappings/labs/{cid}.yaml: lab.order: the ServiceRequest it proposes changes when "
                            f"read by the FHIR R4 model: {dumped!r}")
    return problems
