from __future__ import annotations

import pandas as pd
import pytest

from workbench.chem import Molecule, MoleculeSet, validate


def test_dedup_keeps_first_and_order():
    s = MoleculeSet([Molecule("OCC", name="first"), "CCO", "c1ccccc1", "C1=CC=CC=C1"])
    assert s.smiles == ["CCO", "c1ccccc1"]
    assert s[0].name == "first"
    assert not s.add("CCO") and s.add("CCN") and len(s) == 3


def test_sequence_protocol():
    s = MoleculeSet(["CCO", "CCN", "CCC"])
    assert isinstance(s[1:], MoleculeSet) and s[1:].smiles == ["CCN", "CCC"]
    assert s["NCC"].smiles == "CCN"
    assert "OCC" in s and Molecule("CCC") in s and "C1CC" not in s
    with pytest.raises(KeyError):
        s["CCCl"]
    assert (s + ["CCO", "CCS"]).smiles == ["CCO", "CCN", "CCC", "CCS"]


def test_filter_and_sort():
    s = MoleculeSet(["CCO", "CCCCCCCCO", "c1ccccc1C(=O)O"])
    assert s.sort_by("mw").smiles[0] == "CCO"
    assert s.sort_by("mw", reverse=True).smiles[0] == "CCCCCCCCO"
    assert s.filter(lambda m: m.aromatic_rings > 0).smiles == ["O=C(O)c1ccccc1"]
    scored = MoleculeSet([m.with_meta(score=-m.mw) for m in s])
    assert scored.sort_by("score").smiles[0] == "CCCCCCCCO"


def test_to_pandas_and_files(tmp_path):
    s = MoleculeSet([Molecule("CCO", name="ethanol").with_meta(validation=validate("CCO")), "c1ccccc1"])
    df = s.to_pandas()
    assert list(df["smiles"]) == ["CCO", "c1ccccc1"]
    assert {"mw", "qed", "sa", "name", "valid"} <= set(df.columns)
    s.to_csv(tmp_path / "a.csv")
    assert list(pd.read_csv(tmp_path / "a.csv")["smiles"]) == ["CCO", "c1ccccc1"]
    s.to_sdf(tmp_path / "a.sdf")
    assert (tmp_path / "a.sdf").read_text().count("$$$$") == 2


def test_html_grid_has_svg_and_properties():
    s = MoleculeSet([Molecule("CCO").with_meta(validation=validate("CCO")), "c1ccccc1"])
    html = s._repr_html_()
    assert html.count("<svg") == 2 and "qed" in html and "2 molecule(s)" in html and "warning(s)" in html
    assert repr(s) == "MoleculeSet([CCO, c1ccccc1])"
    assert "<svg" in Molecule("CCO")._repr_html_()
