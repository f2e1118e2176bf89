from __future__ import annotations

import pytest

from workbench.chem import Molecule, MoleculeSet, conformers, io
from workbench.errors import InvalidMoleculeError

GOOD = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]


def _sdf_with_one_bad_record(tmp_path):
    """Three records; the middle one has a pentavalent carbon."""
    from rdkit import Chem

    bad = Chem.MolFromSmiles("CC(C)(C)(C)C", sanitize=False)
    bad.UpdatePropertyCache(strict=False)
    bad.SetProp("_Name", "m1")
    good = [Molecule(s, name=f"m{i}") for i, s in zip((0, 2), (GOOD[0], GOOD[2]), strict=True)]
    blocks = [good[0].to_molblock(), Chem.MolToMolBlock(bad, kekulize=False), good[1].to_molblock()]
    path = tmp_path / "mixed.sdf"
    path.write_text("".join(b + "$$$$\n" for b in blocks))
    return path


def test_sdf_bad_record_is_reported_and_good_ones_kept(tmp_path):
    path = _sdf_with_one_bad_record(tmp_path)
    result = io.read_sdf(path)
    assert [m.smiles for m in result] == [Molecule(GOOD[0]).smiles, Molecule(GOOD[2]).smiles]
    assert len(result.failures) == 1 and result.failures[0].index == 1
    assert "valence" in result.failures[0].reason.lower()
    assert [m.name for m in result] == ["m0", "m2"]


def test_sdf_roundtrip_keeps_fields_and_3d(tmp_path):
    m3d = conformers.embed(Molecule("CCN"), seed=0).with_meta(name="ethylamine", score=0.5)
    io.write_sdf([m3d], tmp_path / "a.sdf", properties=("mw",))
    back = io.read_sdf(tmp_path / "a.sdf")[0]
    assert back == m3d and back.has_3d and back.name == "ethylamine"
    assert float(back.meta["score"]) == 0.5 and float(back.meta["mw"]) == pytest.approx(m3d.mw, abs=1e-3)


def test_smiles_and_csv_roundtrip(tmp_path):
    mols = MoleculeSet(GOOD)
    io.write(mols, tmp_path / "a.smi")
    io.write(mols, tmp_path / "a.csv")
    assert [m.smiles for m in io.read(tmp_path / "a.smi")] == mols.smiles
    assert [m.smiles for m in io.read(tmp_path / "a.csv")] == mols.smiles


def test_smiles_file_with_bad_lines(tmp_path):
    path = tmp_path / "x.smi"
    path.write_text("CCO ethanol\nC1CC broken\n\nc1ccccc1 benzene\n")
    result = io.read_smiles(path)
    assert [m.name for m in result] == ["ethanol", "benzene"]
    assert result.failures[0].source == "C1CC"


def test_xyz_and_pdb_roundtrip(tmp_path):
    m3d = conformers.embed(Molecule("CC(=O)Oc1ccccc1C(=O)O"), seed=0)
    io.write(m3d, tmp_path / "a.xyz")
    io.write(m3d, tmp_path / "a.pdb")
    assert io.read_xyz(tmp_path / "a.xyz") == m3d
    assert io.read_pdb(tmp_path / "a.pdb") == m3d
    assert io.read(tmp_path / "a.pdb")[0] == m3d


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(InvalidMoleculeError, match="unknown file type"):
        io.read(tmp_path / "a.docx")
    with pytest.raises(InvalidMoleculeError, match="cannot read"):
        io.read_sdf(tmp_path / "missing.sdf")
    with pytest.raises(ValueError):
        io.write(MoleculeSet(GOOD), tmp_path / "many.xyz")
