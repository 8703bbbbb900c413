"""UnitConverter: UCUM conversions, mass <-> mole <-> equivalents from each analyte's molar mass and valence."""
from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO

ALIASES = yaml.safe_load((REPO / "mappings" / "units.yaml").read_text(encoding="utf-8"))["aliases"]
DIVALENT = ["magnesium", "calcium-total"]


@pytest.fixture(scope="module")
def units(knowledge):
    return knowledge.terminology.units


def analyte(knowledge, concept_id: str) -> tuple[float, int]:
    spec = knowledge.concepts[concept_id].lab
    return spec.molar_mass_g_per_mol, spec.valence


@pytest.mark.parametrize("concept_id", DIVALENT)
def test_mass_per_decilitre_to_millimoles_uses_the_molar_mass(units, knowledge, concept_id):
    molar_mass, valence = analyte(knowledge, concept_id)
    # x mg/dL = 10x mg/L = 10x / M mmol/L
    assert units.convert(2.0, "mg/dL", "mmol/L", molar_mass, valence) == pytest.approx(2.0 * 10 / molar_mass)
    assert units.convert(0.8, "mmol/L", "mg/dL", molar_mass, valence) == pytest.approx(0.8 * molar_mass / 10)


@pytest.mark.parametrize("concept_id", DIVALENT)
def test_milliequivalents_are_millimoles_times_valence(units, knowledge, concept_id):
    molar_mass, valence = analyte(knowledge, concept_id)
    assert valence == 2
    assert units.convert(0.8, "mmol/L", "meq/L", molar_mass, valence) == pytest.approx(0.8 * valence)
    assert units.convert(1.6, "meq/L", "mmol/L", molar_mass, valence) == pytest.approx(1.6 / valence)


@pytest.mark.parametrize("concept_id", DIVALENT)
def test_milliequivalents_to_mass_and_back(units, knowledge, concept_id):
    molar_mass, valence = analyte(knowledge, concept_id)
    mg_dl = units.convert(1.6, "meq/L", "mg/dL", molar_mass, valence)
    assert mg_dl == pytest.approx(1.6 / valence * molar_mass / 10)
    assert units.convert(mg_dl, "mg/dL", "meq/L", molar_mass, valence) == pytest.approx(1.6)


def test_potassium_milliequivalents_equal_millimoles(units, knowledge):
    molar_mass, valence = analyte(knowledge, "potassium")
    assert valence == 1
    assert units.convert(3.4, "meq/L", "mmol/L", molar_mass, valence) == pytest.approx(3.4)
    assert units.convert(3.4, "mmol/L", "meq/L", molar_mass, valence) == pytest.approx(3.4)


def test_alias_spelling_converts_like_its_ucum_form(units, knowledge):
    molar_mass, valence = analyte(knowledge, "magnesium")
    assert ALIASES["mEq/L"] == "meq/L"
    assert units.convert(1.6, "mEq/L", "mg/dL", molar_mass, valence) == pytest.approx(
        units.convert(1.6, "meq/L", "mg/dL", molar_mass, valence))


@pytest.mark.parametrize(("alias", "ucum"), sorted(ALIASES.items()), ids=sorted(ALIASES))
def test_every_alias_in_units_yaml_maps_to_a_unit_that_parses(units, alias, ucum):
    assert units.check(ucum)
    assert units.check(alias)


def test_same_dimension_needs_no_molar_mass(units):
    assert units.convert(1.0, "mg/dL", "g/L") == pytest.approx(0.01)
    assert units.convert(1.0, "umol/L", "mmol/L") == pytest.approx(0.001)


@pytest.mark.parametrize("unit", ["furlong", "not-a-unit", ""], ids=["furlong", "made-up", "empty"])
def test_unknown_unit_cannot_be_converted(units, knowledge, unit):
    molar_mass, valence = analyte(knowledge, "magnesium")
    assert units.convert(1.0, unit, "mg/dL", molar_mass, valence) is None
    assert not units.check(unit)


def test_mass_to_moles_without_a_molar_mass_is_none(units):
    assert units.convert(2.0, "mg/dL", "mmol/L") is None
    assert units.convert(2.0, "mmol/L", "mg/dL") is None


def test_unrelated_dimensions_are_none_even_with_a_molar_mass(units, knowledge):
    molar_mass, valence = analyte(knowledge, "magnesium")
    assert units.convert(2.0, "mg/dL", "mmol", molar_mass, valence) is None
    assert units.convert(2.0, "mg/dL", "mL", molar_mass, valence) is None


def test_equivalents_to_moles_without_a_valence_is_none(units, knowledge):
    molar_mass, _ = analyte(knowledge, "magnesium")
    assert units.convert(1.6, "meq/L", "mg/dL", molar_mass, None) is None
    assert units.convert(1.6, "meq/L", "meq/L", molar_mass, None) == 1.6
