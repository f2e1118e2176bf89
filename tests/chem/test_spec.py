from __future__ import annotations

import pytest

from workbench.chem import DesignSpec, Molecule
from workbench.errors import SpecError

ISSUE_EXAMPLE = """
text: "a CNS-penetrant amide with one aromatic ring, no halogens"
properties: {mw: [250, 400], clogp: [1, 3], tpsa: [20, 90], hbd: [0, 2], hba: [2, 6], rotb: [0, 6],
             qed: [0.6, 1.0], sa: [1, 4], rings: [1, 3], aromatic_rings: [1, 1], heavy_atoms: [15, 30],
             charge: [0, 0]}
require: ["C(=O)N", "c1ccccc1"]
forbid:  ["[F,Cl,Br,I]", "[N+](=O)[O-]"]
scaffold: "c1ccccc1"
elements: [C, N, O, S, F, Cl, Br]
"""


def test_the_documented_yaml_loads_and_checks():
    spec = DesignSpec.from_yaml(ISSUE_EXAMPLE)
    assert spec.n_constraints == 12 + 2 + 2 + 1 + 1
    good = spec.check("CC(=O)Nc1ccc(OCCN2CCOCC2)cc1")
    assert good.ok, str(good)
    bad = spec.check("O=C(Nc1ccc(Cl)cc1)C1CCCCC1")
    failed = {(r.kind, r.name) for r in bad.failed}
    assert ("forbid", "[F,Cl,Br,I]") in failed
    measured = bad.by_name()["property:mw"].measured
    assert measured == pytest.approx(Molecule("O=C(Nc1ccc(Cl)cc1)C1CCCCC1").mw)


def test_roundtrip_yaml_json():
    spec = DesignSpec.from_yaml(ISSUE_EXAMPLE)
    assert DesignSpec.from_yaml(spec.to_yaml()) == spec
    import json

    assert DesignSpec.from_json(json.dumps(spec.to_dict())) == spec


@pytest.mark.parametrize(
    "data,field",
    [
        ({"properties": {"weight": [1, 2]}}, "properties.weight"),
        ({"properties": {"mw": [400, 100]}}, "properties.mw"),
        ({"properties": {"mw": ["a", 2]}}, "properties.mw"),
        ({"properties": {"mw": [float("nan"), 2]}}, "properties.mw"),
        ({"require": ["C(=O"]}, "require[0]"),
        ({"forbid": ["[Cl", "C"]}, "forbid[0]"),
        ({"scaffold": "c1cc(("}, "scaffold"),
        ({"elements": ["C", "Qq"]}, "elements"),
        ({"require": ["CC"], "forbid": ["CC"]}, "require[0]"),
    ],
)
def test_bad_specs_name_the_field(data, field):
    with pytest.raises(SpecError) as info:
        DesignSpec.from_dict(data)
    assert info.value.field == field


def test_unknown_top_level_key_and_bad_yaml():
    with pytest.raises(SpecError, match="colour"):
        DesignSpec.from_dict({"colour": "blue"})
    with pytest.raises(SpecError):
        DesignSpec.from_yaml("properties: [unclosed")


def test_invalid_molecule_fails_instead_of_raising():
    report = DesignSpec(properties={"mw": [0, 1000]}).check("C1CC")
    assert not report.ok and report.results[0].kind == "valid"


def test_scaffold_and_elements():
    spec = DesignSpec(scaffold="c1ccc2[nH]ccc2c1", elements=["C", "N", "O"])
    assert spec.check("Cc1c[nH]c2ccccc12").ok
    assert not spec.check("c1ccccc1").ok
    assert not spec.check("Cc1c[nH]c2ccc(Cl)cc12").ok


def test_single_value_range_and_describe():
    spec = DesignSpec(properties={"aromatic_rings": 1, "mw": [200, 300]})
    assert spec.properties["aromatic_rings"] == (1.0, 1.0)
    assert any("between 200 and 300" in line for line in spec.describe())


def test_moleculeset_filter_with_spec():
    from workbench.chem import MoleculeSet

    mols = MoleculeSet(["CCO", "c1ccccc1C(=O)NC", "CCCCCCCC"])
    assert mols.filter(DesignSpec(require=["C(=O)N"])).smiles == ["CNC(=O)c1ccccc1"]
