"""Codes to concepts and units to canonical units, from the tables in mappings/ (built once at start-up)."""
from __future__ import annotations

import logging
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .knowledge.model import Concept

if TYPE_CHECKING:
    from .knowledge.rxnorm_table import Row as ProductRow

log = logging.getLogger(__name__)
_NON_WORD = re.compile(r"[^a-z0-9]+")
_BRACKETED_BRAND = re.compile(r"\[([^\]]+)\]\s*$")
_MIN_BRAND_CHARS = 4  # shorter brand names collide with ordinary words and abbreviations
_STRENGTH_TTYS = frozenset({"SCD", "SBD", "SCDC", "SBDC"})  # RxNorm term types whose names give a strength


# A unit string longer than this, or with an exponent of three digits or more, is not parsed: a long power of ten
# can hang the UCUM parser or overflow a float, and no laboratory unit needs either.
MAX_UNIT_CHARS = 40
_HUGE_EXPONENT = re.compile(r"(?:[*^][+-]?|[A-Za-z\]}][+-]?)\d{3,}")
_MICRO = str.maketrans({"\u00b5": "u", "\u03bc": "u"})  # micro sign and Greek mu, both written u in UCUM
_SPACES = re.compile(r"\s+")


class UnitConverter:
    """UCUM conversion through ucumvert/pint, with per-analyte molar mass and valence for mass<->mole<->eq.

    A unit as sent is read in this order (spelling()): trimmed, inner spaces collapsed, micro sign and Greek mu
    written u; then an alias from mappings/units.yaml as spelled; then the string itself when it is valid UCUM
    (UCUM is case-sensitive: Mg is megagram, never folded to mg); then an alias matched case-insensitively.
    Anything else is not a unit the service can read, and is never guessed."""

    def __init__(self, aliases: Mapping[str, str]):
        from ucumvert import PintUcumRegistry  # slow import (~0.7 s): done once per process

        self._ureg = PintUcumRegistry()
        self._aliases = {self._tidy(k): v for k, v in aliases.items()}
        folded: dict[str, set[str]] = defaultdict(set)
        for key, value in self._aliases.items():
            folded[key.casefold()].add(value)
        # two aliases that differ only in case but mean different units are never matched case-insensitively
        self._folded = {k: next(iter(v)) for k, v in folded.items() if len(v) == 1}
        self.ambiguous_folds = tuple(sorted(k for k, v in folded.items() if len(v) > 1))
        self._lock = threading.Lock()
        self.spelling = lru_cache(maxsize=4096)(self._spelling)  # failures (None) are cached too
        self._parsed = lru_cache(maxsize=4096)(self._parse_ucum)
        self.factor = lru_cache(maxsize=4096)(self._factor)

    @staticmethod
    def _tidy(unit: str) -> str:
        return _SPACES.sub(" ", unit.strip()).translate(_MICRO)

    def normalize(self, unit: str) -> str:
        """The UCUM spelling of a unit as sent, or the tidied string when it cannot be read."""
        return self.spelling(unit) or (self._tidy(unit) if isinstance(unit, str) else "")

    def _spelling(self, unit: Any) -> str | None:
        if not isinstance(unit, str) or len(unit) > MAX_UNIT_CHARS:
            return None
        tidy = self._tidy(unit)
        if not tidy:
            return None
        for candidate in (self._aliases.get(tidy), tidy, self._folded.get(tidy.casefold())):
            if candidate is not None and self._parsed(candidate) is not None:
                return candidate
        return None

    def check(self, unit: str) -> bool:
        """True when the unit string can be read as UCUM (after the normalisation above)."""
        return self.spelling(unit) is not None

    def convert(self, value: float, unit: str, to_unit: str, molar_mass: float | None = None,
                valence: int | None = None) -> float | None:
        """value in `unit` expressed in `to_unit`, or None when the two cannot be related."""
        if not isinstance(unit, str):
            return None  # a chart may hold any JSON where a unit belongs
        f = self.factor(unit, to_unit, molar_mass, valence)
        return None if f is None else value * f

    def _parse_ucum(self, ucum: str):
        """The pint quantity of a UCUM string, or None (bounded: see MAX_UNIT_CHARS)."""
        if len(ucum) > MAX_UNIT_CHARS or _HUGE_EXPONENT.search(ucum):
            return None
        try:
            with self._lock:  # pint registries are not documented as thread-safe
                parsed = self._ureg.from_ucum(ucum)
                # a lone annotation ({tbl}) comes back as a parser token; UCUM reads it as the unit 1
                return parsed if hasattr(parsed, "dimensionality") else self._ureg.from_ucum("1")
        except Exception:  # ucumvert raises several parser error types
            return None

    def _factor(self, unit: str, to_unit: str, molar_mass: float | None, valence: int | None) -> float | None:
        src_spelling, dst_spelling = self.spelling(unit), self.spelling(to_unit)
        if src_spelling is None or dst_spelling is None:
            return None
        src, dst = self._parsed(src_spelling), self._parsed(dst_spelling)
        try:
            with self._lock:
                return self._relate(src, dst, molar_mass, valence)
        except (ArithmeticError, ValueError, TypeError, LookupError):  # pint's errors derive from these
            return None

    def _relate(self, src, dst, molar_mass: float | None, valence: int | None) -> float | None:
        scale = 1.0
        # UCUM defines eq as mol; for a multivalent ion one mole carries `valence` equivalents.
        src_eq, dst_eq = "equivalent" in str(src.units), "equivalent" in str(dst.units)
        if src_eq != dst_eq:
            if valence is None:
                return None  # equivalents and moles differ by the charge, which this analyte does not give
            scale = 1.0 / valence if src_eq else float(valence)
        if src.dimensionality == dst.dimensionality:
            return scale * float(src.to(dst.units).magnitude)
        if molar_mass is None:
            return None
        mass_per_vol = self._ureg.Quantity(1, "g/L").dimensionality
        mol_per_vol = self._ureg.Quantity(1, "mol/L").dimensionality
        if src.dimensionality == mass_per_vol and dst.dimensionality == mol_per_vol:
            mol = src.to("g/L").magnitude / molar_mass
            return scale * float(self._ureg.Quantity(mol, "mol/L").to(dst.units).magnitude)
        if src.dimensionality == mol_per_vol and dst.dimensionality == mass_per_vol:
            grams = src.to("mol/L").magnitude * molar_mass
            return scale * float(self._ureg.Quantity(grams, "g/L").to(dst.units).magnitude)
        return None


@dataclass(frozen=True)
class RouteTable:
    """Routes (mappings/routes.yaml): which are systemic, SNOMED CT route codes and words that name a route."""

    systemic: frozenset[str]
    labels: Mapping[str, str]
    snomed: Mapping[str, str]
    words: tuple[tuple[str, str], ...]  # (normalised phrase, route), in the file's order

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> RouteTable:
        doc = doc or {}
        routes = doc.get("routes") or {}
        return cls(frozenset(r for r, spec in routes.items() if spec.get("systemic")),
                   MappingProxyType({r: spec.get("label", r) for r, spec in routes.items()}),
                   MappingProxyType(dict(doc.get("snomed") or {})),
                   tuple((normalise_words(w["phrase"]), w["route"]) for w in doc.get("words") or ()))

    def in_words(self, text: str) -> str | None:
        """The route the first listed phrase found in a text names, or None."""
        padded = f" {normalise_words(text)} "
        return next((route for phrase, route in self.words if f" {phrase} " in padded), None)


@dataclass(frozen=True)
class DosingTable:
    """How doses and their timing are read (mappings/dosing.yaml): administrations per day of each timing code and
    timing text, the dose units that mean one unit of presentation, and the strength units of product names."""

    mass_unit: str
    volume_unit: str
    timing_system: str
    per_day_by_code: Mapping[str, float]
    per_day_by_text: Mapping[str, float]  # normalise_words(text) -> administrations per day
    presentation_ucum: frozenset[str]
    presentation_snomed: frozenset[str]
    presentation_words: frozenset[str]  # case-folded
    strength_units: Mapping[str, str]  # lower-case RxNorm strength unit -> UCUM
    strength_volume_units: Mapping[str, str]
    day_unit: str = "d"
    sources: tuple[str, ...] = ()  # cards/sources.yaml ids the table cites

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None, units: UnitConverter) -> DosingTable:
        """The table of a dosing.yaml document; a timing whose period unit cannot be converted to days is left out
        (lint reports it)."""
        doc = doc or {}
        names = doc.get("units") or {}
        day = names.get("day", "d")

        def per_day(spec: Mapping[str, Any]) -> float | None:
            days = units.convert(float(spec["period"]), spec["unit"], day)
            return spec["frequency"] / days if days else None

        codes = (doc.get("timing_codes") or {}).get("codes") or {}
        texts = {**codes, **(doc.get("timing_texts") or {})}
        presentation = doc.get("presentation_units") or {}
        return cls(
            mass_unit=names.get("mass", ""), volume_unit=names.get("volume", ""), day_unit=day,
            sources=tuple(doc.get("sources") or ()),
            timing_system=(doc.get("timing_codes") or {}).get("system", ""),
            per_day_by_code=MappingProxyType({k: f for k, v in codes.items() if (f := per_day(v))}),
            per_day_by_text=MappingProxyType({normalise_words(k): f for k, v in texts.items() if (f := per_day(v))}),
            presentation_ucum=frozenset(presentation.get("ucum") or ()),
            presentation_snomed=frozenset(presentation.get("snomed") or ()),
            presentation_words=frozenset(w.casefold() for w in presentation.get("words") or ()),
            strength_units=MappingProxyType({k.lower(): v for k, v in (doc.get("strength_units") or {}).items()}),
            strength_volume_units=MappingProxyType({k.lower(): v for k, v in
                                                   (doc.get("strength_volume_units") or {}).items()}))


@dataclass(frozen=True)
class MedicationIdentity:
    """What a medication is: concepts and ingredients, the route it is given by (None: not told), how it was
    recognised (code, name or none), and the RxNorm codes it carried that the roll-up table does not know."""

    concepts: frozenset[str]
    ingredients: tuple[str, ...]
    route: str | None
    by: str
    unrecognised: tuple[str, ...] = ()


class Terminology:
    """Look-ups from FHIR codings to concept ids, built from the concepts and the RxNorm roll-up table."""

    def __init__(self, concepts: Mapping[str, Concept], systems: Mapping[str, tuple[str, ...]],
                 products: Mapping[str, ProductRow], units: UnitConverter, routes: RouteTable | None = None,
                 dosing: DosingTable | None = None, dose_concepts: frozenset[str] = frozenset()):
        self.units = units
        self.routes = routes or RouteTable.from_doc(None)
        self.dosing = dosing or DosingTable.from_doc(None, units)
        # the medication concepts some rule tests a daily dose of: only their doses are worth reading
        self.dose_concepts = dose_concepts
        self._system_names = {uri: name for name, uris in systems.items() for uri in uris}
        self._concepts = concepts
        self._rxnorm_codes: dict[str, tuple[str, ...]] = {}  # rxnorm_codes, worked out on first use
        by_ingredient: dict[str, set[str]] = defaultdict(set)
        self._rx_direct: dict[str, set[str]] = defaultdict(set)
        self._loinc: dict[str, tuple[str, int]] = {}  # code -> (concept, position in the concept's list)
        self._snomed: dict[str, set[str]] = defaultdict(set)
        self._icd_prefixes: dict[str, list[tuple[str, str]]] = defaultdict(list)
        phrases: dict[str, set[str]] = defaultdict(set)  # normalised name -> ingredients it names
        for c in concepts.values():
            for name in c.ingredients:
                by_ingredient[name].add(c.id)
                phrases[normalise_words(name)].add(name)
            for name in c.except_with:
                phrases[normalise_words(name)].add(name)
            for code in c.codes.get("rxnorm", ()):
                self._rx_direct[code].add(c.id)
            for rank, code in enumerate(c.codes.get("loinc", ())):
                self._loinc[code] = (c.id, rank)
            for code in c.codes.get("snomed", ()):
                self._snomed[code].add(c.id)
            for code in c.codes.get("icd10cm", ()):
                norm = _norm_icd(code)
                self._icd_prefixes[norm[:3]].append((norm, c.id))
        self.condition_max_age_days = {c.id: c.max_age_days for c in concepts.values() if c.max_age_days}
        self._by_ingredient = {k: frozenset(v) for k, v in by_ingredient.items()}
        self._products = products
        brand_routes: dict[str, set[str | None]] = defaultdict(set)
        for row in products.values():
            for brand in _brands(row):
                key = normalise_words(brand)
                if len(key) < _MIN_BRAND_CHARS or (key in phrases and key not in brand_routes):
                    continue  # too short to be safe, or also an ingredient's name
                phrases[key] |= set(row.ingredients)
                if row.dose_form:  # a brand-name row has no dose form of its own; its products do
                    brand_routes[key].add(self.routes.in_words(row.dose_form))
                else:
                    brand_routes.setdefault(key, set())
        # a brand tells the route only when every product of it is given the same known way
        self._brand_routes = {k: next(iter(v)) if len(v) == 1 else None for k, v in brand_routes.items()}
        self._phrases = {k: frozenset(v) for k, v in phrases.items()}
        # longest first, so that a combination or salt name wins over its parts
        alternatives = sorted(self._phrases, key=len, reverse=True)
        self._name_re = re.compile(r"(?<![a-z0-9])(" + "|".join(map(re.escape, alternatives)) + r")(?![a-z0-9])") \
            if alternatives else None

    def system_name(self, uri: object) -> str | None:
        """Short name (rxnorm, loinc, icd10cm, snomed, ucum) of a code system URI; None for anything else (a chart
        may hold any JSON where a URI belongs)."""
        return self._system_names.get(uri) if isinstance(uri, str) else None

    def medication(self, codings: Iterable[Mapping], text: str | None, *, route: Any = None,
                   form: Any = None) -> tuple[frozenset[str], tuple[str, ...]]:
        """(concept ids, ingredient names) for a medication's codings; see identify."""
        found = self.identify(codings, text, route=route, form=form)
        return found.concepts, found.ingredients

    def identify(self, codings: Iterable[Mapping], text: str | None, *, route: Any = None,
                 form: Any = None) -> MedicationIdentity:
        """A medication's identity from its RxNorm codings (product, salt, brand or ingredient codes), else from
        ingredient and brand names in its text and displays. `route` (a dosageInstruction route) and `form`
        (Medication.form), CodeableConcepts as sent, say where it acts: a concept does not count for a drug given
        by a route the concept does not take (eye drops of a drug whose interactions are systemic)."""
        codings = [c for c in codings if isinstance(c, dict)]
        ingredients: set[str] = set()
        concepts: set[str] = set()
        forms: list[str] = []
        unrecognised: list[str] = []
        for coding in codings:
            if self.system_name(coding.get("system")) != "rxnorm":
                continue
            code = str(coding.get("code") or "")
            row = self._products.get(code)
            if row is not None:
                ingredients.update(row.ingredients)
                if row.dose_form:
                    forms.append(row.dose_form)
            if code in self._rx_direct:
                concepts.update(self._rx_direct[code])
            if row is None and code not in self._rx_direct and code:
                unrecognised.append(code)
        by = "code" if ingredients or concepts else "none"
        words = " ".join([text or ""] + [str(c.get("display") or "") for c in codings])
        brand_route = None
        if by == "none":
            named, brand_route = self._names_in(words)
            ingredients.update(named)
            if ingredients:
                by = "name"
                log.info("medication matched by name fallback, not by code (%d ingredient(s))", len(ingredients))
        where = (self._route_of(route) or self._route_of(form) or next(
            (r for r in map(self.routes.in_words, forms) if r), None) or self.routes.in_words(words) or brand_route)
        for name in ingredients:
            concepts.update(self._by_ingredient.get(name, ()))
        kept = frozenset(cid for cid in concepts if self._counts(self._concepts[cid], where, ingredients))
        return MedicationIdentity(kept, tuple(sorted(ingredients)), where, by, tuple(unrecognised))

    def _counts(self, concept: Concept, route: str | None, ingredients: set[str]) -> bool:
        if concept.except_with and ingredients & set(concept.except_with):
            return False  # the concept says a product also holding one of these is something else
        if route is None:
            return True
        return route in (concept.routes or self.routes.systemic)

    def _route_of(self, concept: Any) -> str | None:
        """The route a route or form CodeableConcept names: a SNOMED CT route code, else words in its text."""
        if not isinstance(concept, dict):
            return None
        codings = [c for c in concept.get("coding") or () if isinstance(c, dict)] \
            if isinstance(concept.get("coding"), list) else []
        for coding in codings:
            if self.system_name(coding.get("system")) == "snomed":
                found = self.routes.snomed.get(str(coding.get("code") or ""))
                if found:
                    return found
        texts = [concept.get("text")] + [c.get("display") for c in codings]
        return next((r for t in texts if isinstance(t, str) and (r := self.routes.in_words(t))), None)

    def _names_in(self, text: str) -> tuple[set[str], str | None]:
        """Ingredient names found in a text (directly or through a brand name), and the route a brand implies."""
        if self._name_re is None:
            return set(), None
        found: set[str] = set()
        route = None
        for phrase in self._name_re.findall(normalise_words(text)):
            found |= self._phrases[phrase]
            route = route or self._brand_routes.get(phrase)
        return found, route

    def rxnorm_codes(self, concept_id: str) -> tuple[str, ...]:
        """Every RxNorm code that identifies a medication concept by code: its own codes, then each product, salt
        and brand code of the roll-up table holding one of its ingredients (and none it is not with), sorted."""
        known = self._rxnorm_codes.get(concept_id)
        if known is not None:
            return known
        concept = self._concepts[concept_id]
        ingredients, unless = set(concept.ingredients), set(concept.except_with)
        products = {code for code, row in self._products.items()
                    if ingredients & set(row.ingredients) and not unless & set(row.ingredients)}
        own = concept.codes.get("rxnorm", ())
        codes = (*own, *sorted(products - set(own), key=lambda c: (len(c), c)))
        self._rxnorm_codes[concept_id] = codes  # a card render asks again and again; the answer never changes
        return codes

    def product_names(self, codings: Iterable[Mapping]) -> tuple[str, ...]:
        """The RxNorm names of the products (not ingredients, brands or packs) a medication's RxNorm codings name,
        as the roll-up table gives them: where a product's strength is read from."""
        names = []
        for coding in codings:
            if isinstance(coding, dict) and self.system_name(coding.get("system")) == "rxnorm":
                row = self._products.get(str(coding.get("code") or ""))
                if row is not None and row.tty in _STRENGTH_TTYS:
                    names.append(row.display)
        return tuple(names)

    def lab_code(self, concept: Any) -> tuple[str, int] | None:
        """(lab concept id, position of the code in the concept's list) for an Observation's code (a
        CodeableConcept as sent: anything that is not one has no code), or None."""
        codings = concept.get("coding") if isinstance(concept, dict) else None
        if not isinstance(codings, list):
            return None
        for coding in codings:
            if not isinstance(coding, dict):
                continue
            code = coding.get("code")
            # the code first: one dict look-up rules out most codings of a chart
            found = self._loinc.get(code if isinstance(code, str) else str(code or ""))
            if found is not None and self.system_name(coding.get("system")) == "loinc":
                return found
        return None

    def conditions(self, codings: Iterable[Mapping]) -> frozenset[str]:
        """Condition concept ids for a Condition's codings: ICD-10-CM by prefix, SNOMED CT exact."""
        found: set[str] = set()
        for coding in codings:
            system = self.system_name(coding.get("system"))
            code = str(coding.get("code") or "")
            if system == "icd10cm":
                norm = _norm_icd(code)
                found.update(cid for prefix, cid in self._icd_prefixes.get(norm[:3], ()) if norm.startswith(prefix))
            elif system == "snomed":
                found.update(self._snomed.get(code, ()))
        return frozenset(found)

    def concept(self, concept_id: str) -> Concept:
        """The concept with this id (KeyError if absent: the loader guarantees references exist)."""
        return self._concepts[concept_id]


def normalise_words(text: str) -> str:
    """Lower case, every run of characters other than letters and digits read as one space, so that Tall Man
    lettering and the "-", "/" and "," that join a combination's parts all read as plain words."""
    return " ".join(_NON_WORD.split(text.lower())).strip()


def _brands(row: ProductRow) -> list[str]:
    """Brand names a table row gives: a BN row's name, or the [Brand] that ends a branded product's name."""
    if row.tty == "BN":
        return [row.display]
    match = _BRACKETED_BRAND.search(row.display) if row.tty in ("SBD", "BPCK", "SBDC") else None
    return [match.group(1)] if match else []


def _norm_icd(code: str) -> str:
    return code.replace(".", "").strip().upper()
