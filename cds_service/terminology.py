"""Codes to concepts and units to canonical units, from the tables in mappings/ (built once at start-up)."""
from __future__ import annotations

import logging
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any
from functools import lru_cache

from .knowledge.model import Concept

log = logging.getLogger(__name__)
_WORD = re.compile(r"[a-z][a-z0-9-]*")


class UnitConverter:
    """UCUM conversion through ucumvert/pint, with per-analyte molar mass and valence for mass<->mole<->eq."""

    def __init__(self, aliases: Mapping[str, str]):
        from ucumvert import PintUcumRegistry  # slow import (~0.7 s): done once per process

        self._ureg = PintUcumRegistry()
        self._aliases = dict(aliases)
        self._lock = threading.Lock()
        self.factor = lru_cache(maxsize=4096)(self._factor)

    def normalize(self, unit: str) -> str:
        """The UCUM spelling of a unit as sent (aliases from mappings/units.yaml applied)."""
        return self._aliases.get(unit, unit)

    def check(self, unit: str) -> bool:
        """True when the unit string parses as UCUM (after aliases)."""
        try:
            self._parse(unit)
            return True
        except Exception:  # ucumvert raises several parser error types
            return False

    def convert(self, value: float, unit: str, to_unit: str, molar_mass: float | None = None,
                valence: int | None = None) -> float | None:
        """value in `unit` expressed in `to_unit`, or None when the two cannot be related."""
        if not isinstance(unit, str):
            return None  # a chart may hold any JSON where a unit belongs
        f = self.factor(unit, to_unit, molar_mass, valence)
        return None if f is None else value * f

    def _parse(self, unit: str):
        with self._lock:  # pint registries are not documented as thread-safe
            return self._ureg.from_ucum(self._aliases.get(unit, unit))

    def _factor(self, unit: str, to_unit: str, molar_mass: float | None, valence: int | None) -> float | None:
        try:
            src, dst = self._parse(unit), self._parse(to_unit)
        except Exception:
            return None
        with self._lock:
            scale = 1.0
            # UCUM defines eq as mol; for a multivalent ion one mole carries `valence` equivalents.
            src_eq, dst_eq = "equivalent" in str(src.units), "equivalent" in str(dst.units)
            if src_eq != dst_eq and valence is None:
                return None  # equivalents and moles differ by the charge, which this analyte does not give
            if src_eq and not dst_eq:
                scale /= valence
            elif dst_eq and not src_eq:
                scale *= valence
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


class Terminology:
    """Look-ups from FHIR codings to concept ids, built from the concepts and the RxNorm roll-up table."""

    def __init__(self, concepts: Mapping[str, Concept], systems: Mapping[str, tuple[str, ...]],
                 product_ingredients: Mapping[str, tuple[str, ...]], units: UnitConverter):
        self.units = units
        self._system_names = {uri: name for name, uris in systems.items() for uri in uris}
        self._concepts = concepts
        by_ingredient: dict[str, set[str]] = defaultdict(set)
        self._rx_direct: dict[str, set[str]] = defaultdict(set)
        self._loinc: dict[str, tuple[str, int]] = {}  # code -> (concept, position in the concept's list)
        self._snomed: dict[str, set[str]] = defaultdict(set)
        self._icd_prefixes: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for c in concepts.values():
            for name in c.ingredients:
                by_ingredient[name].add(c.id)
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
        self._products = product_ingredients
        # longest names first so that a combination name is preferred over its parts
        self._ingredient_names = sorted(by_ingredient, key=len, reverse=True)

    def system_name(self, uri: object) -> str | None:
        """Short name (rxnorm, loinc, icd10cm, snomed, ucum) of a code system URI; None for anything else (a chart
        may hold any JSON where a URI belongs)."""
        return self._system_names.get(uri) if isinstance(uri, str) else None

    def medication(self, codings: Iterable[Mapping], text: str | None) -> tuple[frozenset[str], tuple[str, ...]]:
        """(concept ids, ingredient names) for a medication's codings; falls back to names in display/text."""
        ingredients: set[str] = set()
        concepts: set[str] = set()
        coded = False
        for coding in codings:
            if self.system_name(coding.get("system")) != "rxnorm":
                continue
            code = str(coding.get("code") or "")
            if code in self._products:
                coded = True
                ingredients.update(self._products[code])
            if code in self._rx_direct:
                coded = True
                concepts.update(self._rx_direct[code])
        if not coded:
            names = [text or ""] + [str(c.get("display") or "") for c in codings]
            ingredients.update(self._names_in(" ".join(names).lower()))
            if ingredients:
                log.info("medication matched by name fallback, not by code (%d ingredient(s))", len(ingredients))
        for name in ingredients:
            concepts.update(self._by_ingredient.get(name, ()))
        return frozenset(concepts), tuple(sorted(ingredients))

    def _names_in(self, text: str) -> set[str]:
        found: set[str] = set()
        words = set(_WORD.findall(text))
        for name in self._ingredient_names:
            if (" " in name and name in text) or name in words:
                found.add(name)
        return found

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


def _norm_icd(code: str) -> str:
    return code.replace(".", "").strip().upper()
