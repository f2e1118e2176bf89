"""Every public entry point against the bad inputs users actually send: a clear error or a report."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.chem import Molecule, MoleculeSet, conformers, io, validate
from workbench.errors import ConformerError, InvalidMoleculeError, WorkbenchError

GARBAGE = "C1C(C(=O)N[C@@H](Cc2ccccc2)Xx"
HUGE = "C" * 520
BAD_SMILES = {"garbage": GARBAGE, "empty": "", "blank": "   ", "unknown element": "C[Xx]C"}
TRICKY_BUT_VALID = {
    "charged": "C[N+](C)(C)C",
    "radical": "[CH3]",
    "salt": "[Na+].[Cl-]",
    "huge": HUGE,
}

ETHANOL_XYZ = """9
ethanol
C  -0.0014  -0.0041   0.0016
C   1.5192   0.0184  -0.0097
O   1.9714   1.3587   0.0059
H  -0.3819  -1.0297  -0.0105
H  -0.3985   0.5081   0.8794
H  -0.3991   0.4860  -0.8999
H   1.8862  -0.5010  -0.8978
H   1.8856  -0.4784   0.8961
H   2.9379   1.3581  -0.0034
"""


@pytest.mark.parametrize("label", sorted(BAD_SMILES))
def test_bad_smiles(label):
    smiles = BAD_SMILES[label]
    with pytest.raises(InvalidMoleculeError) as info:
        Molecule.from_smiles(smiles)
    assert repr(smiles.strip()[:20])[1:-1] in str(info.value) or label in ("empty", "blank")
    report = validate(smiles)
    assert not report.ok and report.errors[0].rule == "parse"
    with pytest.raises(InvalidMoleculeError):
        MoleculeSet([smiles])
    with pytest.raises(WorkbenchError):
        conformers.embed(smiles)


@pytest.mark.parametrize("label", sorted(TRICKY_BUT_VALID))
def test_tricky_inputs_give_reports(label):
    smiles = TRICKY_BUT_VALID[label]
    m = Molecule(smiles)
    report = validate(m)
    assert report.sanitized
    if label == "radical":
        assert not report.ok
    if label == "salt":
        assert report.by_rule("fragments")
    assert math.isfinite(m.mw) and math.isfinite(m.qed) and math.isfinite(m.sa)
    assert "<svg" in m._repr_html_()
    if label == "huge":
        with pytest.raises(ConformerError, match="heavy atoms"):
            conformers.embed(m)


def test_non_string_inputs():
    with pytest.raises(InvalidMoleculeError):
        Molecule.from_smiles(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Molecule(42)  # type: ignore[arg-type]
    assert not validate(42).ok  # type: ignore[arg-type]


def test_xyz_wrong_atom_count():
    bad = ETHANOL_XYZ.replace("9\n", "10\n", 1)
    with pytest.raises(InvalidMoleculeError, match="10 atoms"):
        Molecule.from_xyz(bad)
    assert Molecule.from_xyz(ETHANOL_XYZ).smiles == "CCO"


def test_xyz_nan_coordinates():
    bad = ETHANOL_XYZ.replace("1.5192", "nan")
    with pytest.raises(InvalidMoleculeError, match="NaN"):
        Molecule.from_xyz(bad)
    m3d = conformers.embed("CCO")
    pos = m3d.positions
    pos[0, 0] = float("nan")
    with pytest.raises(InvalidMoleculeError, match="NaN"):
        m3d.with_positions(pos)


def test_xyz_garbage():
    for text in ["", "abc\n\n", "2\nx\nC 0 0 0\nQq 1 1 1\n", "1\nx\nC 0 0\n"]:
        with pytest.raises(InvalidMoleculeError):
            Molecule.from_xyz(text if text else " ")


def test_molblock_garbage():
    for text in ["", "not a molblock\n\n\n", "x\n  RDKit\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n"]:
        with pytest.raises(InvalidMoleculeError):
            Molecule.from_molblock(text)


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.sdf"
    empty.write_text("")
    assert len(io.read_sdf(empty)) == 0
    junk = tmp_path / "junk.sdf"
    junk.write_bytes(b"\x00\xff garbage\n$$$$\nmore junk\n$$$$\n")
    result = io.read_sdf(junk)
    assert len(result) == 0 and len(result.failures) == 2
    bad_xyz = tmp_path / "bad.xyz"
    bad_xyz.write_text(ETHANOL_XYZ.replace("9\n", "3\n", 1))
    assert io.read(bad_xyz).failures


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60))
def test_random_text_never_crashes_the_parsers(text):
    report = validate(text)
    try:
        m = Molecule.from_smiles(text)
    except InvalidMoleculeError:
        assert not report.sanitized
    else:
        assert report.sanitized and report.molecule == m


SMILES_ALPHABET = "CNOSPFIBrcnos()[]=#@+-123456789%/\\.Hl"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=SMILES_ALPHABET, max_size=40))
def test_random_smiles_like_strings(text):
    report = validate(text)
    try:
        Molecule.from_smiles(text)
        assert report.sanitized
    except InvalidMoleculeError as exc:
        assert not report.sanitized and exc.reason


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_random_xyz_and_molblock_text(text):
    for parse in (Molecule.from_xyz, Molecule.from_molblock):
        with contextlib.suppress(InvalidMoleculeError):
            parse(text + "\n")


ALL_BAD = {**BAD_SMILES, **TRICKY_BUT_VALID, "salt2": "CC(=O)[O-].[Na+]", "cation": "C[N+](C)(C)C"}


def _entry_points():
    from workbench.chem import DesignSpec, largest_fragment, neutralize

    spec = DesignSpec(properties={"mw": [0, 500]}, require=["C"])
    return {
        "Molecule": lambda s: Molecule(s),
        "from_smiles": Molecule.from_smiles,
        "validate": validate,
        "MoleculeSet": lambda s: MoleculeSet([s]),
        "embed": lambda s: conformers.embed(s, timeout=20),
        "largest_fragment": largest_fragment,
        "neutralize": neutralize,
        "spec.check": spec.check,
        "svg": lambda s: Molecule(s).to_svg(),
        "properties": lambda s: Molecule(s).properties(),
    }


@pytest.mark.parametrize("entry", sorted(_entry_points()))
@pytest.mark.parametrize("label", sorted(ALL_BAD))
def test_every_entry_point_gives_a_clear_error_or_a_result(entry, label):
    func = _entry_points()[entry]
    try:
        func(ALL_BAD[label])
    except (WorkbenchError, ValueError) as exc:
        assert str(exc)  # a message a user can read
