"""The frozen shapes knowledge takes after loading: concepts, rules, criteria, cards, sources, services."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..terminology import Terminology
    from .identity import IdentityCase

PLACEHOLDER = re.compile(r"\{([a-z_]+)\.([a-z_]+)\}")  # {alias.field} in card text
CONFIGURATION_OPTIONS_KEY = "org.spasm-cds.configuration-options"  # discovery: what an EHR may choose


@dataclass(frozen=True)
class LabSpec:
    """How one analyte's results are normalised, judged and ordered."""

    canonical_unit: str
    molar_mass_g_per_mol: float | None
    valence: int | None
    fallback_low: float | None
    fallback_high: float | None
    order_loinc: str | None
    order_display: str | None
    correction: Correction | None = None
    accepted_units: tuple[str, ...] = ()  # when set, results in other units are not compared
    alternate_units: tuple[AlternateUnit, ...] = ()


@dataclass(frozen=True)
class AlternateUnit:
    """A unit that relates to the canonical unit by a line rather than a UCUM factor:
    canonical = scale x value + offset."""

    unit: str
    scale: float
    offset: float = 0.0


@dataclass(frozen=True)
class Correction:
    """A linear correction by another analyte measured the same day (e.g. calcium for albumin):
    corrected = value + factor x (reference - other), applied only when other < reference."""

    by: str
    factor: float
    reference: float


@dataclass(frozen=True)
class Concept:
    """Codes from several systems that mean one clinical thing."""

    id: str
    domain: str  # medication | lab | condition
    label: str
    codes: Mapping[str, tuple[str, ...]]
    ingredients: tuple[str, ...] = ()
    lab: LabSpec | None = None
    sources: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()  # medications: routes that count (empty: the systemic ones)
    except_with: tuple[str, ...] = ()  # medications: a product also holding one of these is not this concept
    max_age_days: int | None = None  # conditions only: how long after onset an acute condition still counts

    @property
    def lab_spec(self) -> LabSpec:
        """The LabSpec of a lab concept (the loader gives every concept under mappings/labs one); TypeError for a
        concept of another domain."""
        if self.lab is None:
            raise TypeError(f"concept {self.id!r} is not a lab")
        return self.lab


@dataclass(frozen=True)
class Criterion:
    """One line of a rule's include or exclude list; `kind` is a key of evaluate/criteria.KINDS. The fields below
    `value` are those the present kinds read, parsed by the loader; a new kind may read its own YAML from `value`."""

    kind: str
    concepts: tuple[str, ...] = ()
    value: Any = field(default=None, hash=False)  # the YAML under the kind's key, read-only (tuples, mappings)
    alias: str = ""
    within_days: int | None = None
    flag: str | None = None
    below: float | None = None  # in the lab's canonical unit
    above: float | None = None
    age_at_least: int | None = None
    age_below: int | None = None
    sex: str | None = None
    times_uln: float | None = None  # lab: above this multiple of the upper limit of normal
    corrected: bool = False  # lab: compare the corrected value when one can be computed
    since_days: int | None = None  # medication: in use for at least this many days
    with_drafts: bool = False  # medication: drafts being ordered count too
    different_from: str = ""  # medication: ignore drugs sharing an ingredient with this alias's drug
    # medication, draft-order: only a drug whose daily dose of the concept's ingredient is above this, in the mass
    # unit of mappings/dosing.yaml; a dose that cannot be read is unknown
    dose_above: float | None = None
    any_of: tuple[Criterion, ...] = ()  # any: holds when one of these holds
    ignore_unknown: bool = False  # exclude: unknown data does not silence the rule
    confirmed: bool = False  # condition: a provisional, differential or unconfirmed condition does not count


@dataclass(frozen=True)
class Source:
    """A bibliography entry."""

    id: str
    label: str
    citation: str
    url: str
    background: bool = False


@dataclass(frozen=True)
class SmartLink:
    """The timeline app a card offers (a CDS Hooks link of type smart): the lab concepts it charts over time and the
    medication concepts whose start dates it marks."""

    label: str
    labs: tuple[str, ...]
    medications: tuple[str, ...] = ()


@dataclass(frozen=True)
class CardTemplate:
    """Card text with {alias.field} placeholders, plus what the card offers."""

    summary: str
    detail: str
    suggest_missing_labs: bool = False
    links: tuple[tuple[str, str], ...] = ()
    group: str | None = None  # findings of one group share one card
    suggest_remove_draft: bool = False
    short: str | None = None  # the finding's words in its group card's summary
    suggest_labs: tuple[str, ...] = ()  # lab concepts proposed as orders whatever their last result (a recheck)
    smart_link: SmartLink | None = None  # the timeline app offered from the card


@dataclass(frozen=True)
class Rule:
    """When every include criterion holds and no exclude criterion does, the card is shown."""

    id: str
    group: str
    title: str
    hooks: tuple[str, ...]
    severity: str
    evidence: str
    sources: tuple[str, ...]
    rationale: str
    include: tuple[Criterion, ...]
    exclude: tuple[Criterion, ...]
    card: CardTemplate
    version: int = 1  # raised when what the rule decides or says changes


@dataclass(frozen=True)
class Case:
    """A compact patient and whether the rule must (card) or must not (no-card) give its card."""

    rule: str
    name: str
    expect: str
    hook: str
    chart: Mapping[str, Any]
    summary_contains: tuple[str, ...] = ()
    detail_contains: tuple[str, ...] = ()
    suggestions: tuple[str, ...] | None = None
    notice: bool | None = None  # whether the notice of missing data (or of an order not checked) must be given
    notice_contains: tuple[str, ...] = ()  # the missing-data notice must be shown and contain these
    cards: int | None = None  # how many cards the response must hold, the notice not counted
    smart_link: bool | None = None  # whether the rule's card must (or must not) offer the timeline app


@dataclass(frozen=True)
class DataQuery:
    """How one kind of chart data is asked for: the prefetch key and its FHIR query template."""

    kind: str
    key: str
    template: str


@dataclass(frozen=True)
class ConfigOption:
    """A choice an EHR may make per request (Da Vinci CRD style): a boolean that shows or hides the cards of one
    indicator or rule group, or an integer that limits how many cards a call returns."""

    code: str
    type: str  # boolean | integer
    name: str
    description: str
    default: bool | int
    indicator: str | None = None  # boolean: cards of this indicator
    rule_group: str | None = None  # boolean: cards of this rule group
    limits: str | None = None  # integer: max-cards
    minimum: int | None = None
    maximum: int | None = None

    def advertised(self, default: bool | int) -> dict[str, Any]:
        """The entry in discovery's configuration-options list."""
        return {"code": self.code, "type": self.type, "name": self.name, "description": self.description,
                "default": default}


@dataclass(frozen=True)
class OverrideEffect:
    """What an override reason does beyond being recorded: snooze (for days) or until-data-changes."""

    kind: str
    days: int | None = None


@dataclass(frozen=True)
class RepeatWindows:
    """Days within which the same card is not shown again to the same patient for the same data."""

    by_indicator: Mapping[str, int]
    by_group: Mapping[str, int]
    by_rule: Mapping[str, int]

    def days(self, indicator: str, group: str | None, rules: tuple[str, ...]) -> int:
        """The window of a card: the shortest of its rules' own windows, else its group's, else its indicator's."""
        own = [self.by_rule[r] for r in rules if r in self.by_rule]
        if own:
            return min(own)
        if group is not None and group in self.by_group:
            return self.by_group[group]
        return self.by_indicator.get(indicator, 0)


@dataclass(frozen=True)
class Service:
    """One discovery entry and the rules it runs."""

    id: str
    hook: str
    title: str
    description: str
    usage_requirements: str | None
    rules: tuple[Rule, ...]
    gate_conditions: tuple[str, ...]
    queries: tuple[DataQuery, ...]  # what this service's rules need, in prefetch-key order
    required_data: frozenset[str]
    prefetch: Mapping[str, str]  # key -> template, as advertised
    override_reasons: tuple[tuple[str, str], ...] = ()  # (code, display) its cards offer
    # the reasons offered instead on the cards of these rule folders (a work-up card is not an interaction)
    group_override_reasons: Mapping[str, tuple[tuple[str, str], ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    deduplicate: bool = False  # repeat_windows apply to its cards
    skip_shown_at: tuple[str, int] | None = None  # (order-select service id, minutes)
    configuration: tuple[ConfigOption, ...] = ()
    hook_version: str | None = None  # CDS Hooks 3.0 discovery: the hook definition's version it implements
    specification_version: str | None = None  # CDS Hooks 3.0 discovery `version`: the spec version implemented

    def reasons_for(self, rule_group: str) -> tuple[tuple[str, str], ...]:
        """The override reasons a card of this rule folder offers."""
        return self.group_override_reasons.get(rule_group, self.override_reasons)

    @property
    def offered_reasons(self) -> tuple[tuple[str, str], ...]:
        """Every override reason some card of this service offers (what feedback may name)."""
        groups = {rule.group for rule in self.rules}
        lists = [self.override_reasons] if groups - set(self.group_override_reasons) else []
        lists += [self.group_override_reasons[g] for g in sorted(groups) if g in self.group_override_reasons]
        return tuple(dict.fromkeys(reason for reasons in lists for reason in reasons))

    def discovery_entry(self, defaults: Mapping[str, bool | int] | None = None) -> dict[str, Any]:
        """The JSON object this service shows in GET /cds-services; defaults are the site's option values."""
        entry: dict[str, Any] = {"hook": self.hook, "id": self.id, "title": self.title,
                                 "description": self.description, "prefetch": dict(self.prefetch)}
        if self.usage_requirements:
            entry["usageRequirements"] = self.usage_requirements
        if self.specification_version:
            entry["version"] = self.specification_version
        if self.hook_version:
            entry["hookVersion"] = self.hook_version
        if self.configuration:
            defaults = defaults or {}
            entry["extension"] = {CONFIGURATION_OPTIONS_KEY: [o.advertised(defaults.get(o.code, o.default))
                                                              for o in self.configuration]}
        return entry


@dataclass(frozen=True)
class Knowledge:
    """Everything loaded from cards/ and mappings/; built once, shared read-only by every request."""

    concepts: Mapping[str, Concept]
    rules: Mapping[str, Rule]
    cases: tuple[Case, ...]
    sources: Mapping[str, Source]
    services: Mapping[str, Service]
    systems: Mapping[str, tuple[str, ...]]
    override_reasons: tuple[tuple[str, str], ...]
    forbidden: tuple[tuple[str, str], ...]
    max_summary_chars: int
    terminology: Terminology
    missing_data_card: Mapping[str, Any]  # the notice of data that could not be had or read (services.yaml)
    product_ingredients: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    card_groups: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    override_effects: Mapping[str, OverrideEffect] = field(default_factory=lambda: MappingProxyType({}))
    repeat_windows: RepeatWindows = field(default_factory=lambda: RepeatWindows(
        MappingProxyType({}), MappingProxyType({}), MappingProxyType({})))
    configuration_options: Mapping[str, ConfigOption] = field(default_factory=lambda: MappingProxyType({}))
    identity_cases: tuple[IdentityCase, ...] = ()
    proper_names: frozenset[str] = frozenset()  # words that keep their capital mid-sentence (policy.yaml)
    # rule id -> its place among cards of the same indicator (services.yaml card_order; lower first)
    urgency: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    order_card: Mapping[str, str] | None = None  # one card per draft order (services.yaml order_card)
    # SPASM_CDS_CONFIGURATION_DEFAULTS text -> its parsed values (configuration.site_defaults), so a site's
    # defaults are parsed once, not on every call
    parsed_site_defaults: dict[str, Mapping[str, bool | int]] = field(default_factory=dict, compare=False,
                                                                       repr=False)

    def service(self, service_id: str) -> Service | None:
        """The service with this id, or None."""
        return self.services.get(service_id)
