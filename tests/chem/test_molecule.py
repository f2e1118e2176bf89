from __future__ import annotations

import pickle

import numpy as np
import pytest
from rdkit import Chem

from workbench.chem import Molecule, conformers, largest_fragment, neutralize
from workbench.chem.properties import NUMERIC_PROPERTIES, PROPERTIES
from workbench.errors import ConformerError, InvalidMoleculeError

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def test_identity_is_canonical_smiles():
    a, b = Molecule("OC(=O)c1ccccc1OC(C)=O"), Molecule(ASPIRIN)
    assert a == b and hash(a) == hash(b)
    assert a.smiles == Chem.MolToSmiles(Chem.MolFromSmiles(ASPIRIN))
    assert Molecule("C[C@H](N)O") != Molecule("C[C@@H](N)O")  # isomeric


def test_immutable():
    m = Molecule("CCO")
    with pytest.raises(AttributeError):
        m.smiles = "CCC"
    with pytest.raises(AttributeError):
        m.foo = 1
    copy = m.to_rdkit()
    copy.GetAtomWithIdx(0).SetAtomicNum(7)
    assert m.smiles == "CCO"


def test_properties_match_rdkit_and_are_cached():
    from rdkit.Chem import QED, Crippen, Descriptors, rdMolDescriptors

    m = Molecule(ASPIRIN)
    rd = Chem.MolFromSmiles(ASPIRIN)
    assert m.mw == pytest.approx(Descriptors.MolWt(rd))
    assert m.exact_mass == pytest.approx(Descriptors.ExactMolWt(rd))
    assert m.clogp == pytest.approx(Crippen.MolLogP(rd))
    assert m.tpsa == pytest.approx(rdMolDescriptors.CalcTPSA(rd))
    assert (m.hbd, m.hba, m.rotb, m.rings, m.aromatic_rings) == (1, 3, 2, 1, 1)
    assert m.formula == "C9H8O4"
    assert m.heavy_atoms == 13 and m.charge == 0
    assert m.fsp3 == pytest.approx(1 / 9)
    assert m.qed == pytest.approx(QED.qed(rd))
    assert 1.0 <= m.sa <= 3.0  # aspirin is easy to make
    assert set(m.properties()) == set(PROPERTIES)
    assert "qed" in m._cache and m._cache["qed"] == m.qed  # cached after first use


def test_sa_orders_easy_before_hard():
    easy, hard = Molecule("CCO"), Molecule("C[C@H]1C[C@@]23C[C@@H]4[C@H](C)[C@]2(O)C[C@@]14C3")
    assert easy.sa < hard.sa


def test_with_meta_keeps_identity():
    m = Molecule("CCO").with_meta(name="ethanol", score=1.5)
    assert m == Molecule("CCO") and m.name == "ethanol" and m.meta["score"] == 1.5
    with pytest.raises(TypeError):
        m.meta["x"] = 1


def test_molblock_roundtrip_keeps_coordinates():
    m3d = conformers.embed(Molecule("CCO"), seed=3)
    back = Molecule.from_molblock(m3d.to_molblock())
    assert back == m3d and back.has_3d
    np.testing.assert_allclose(back.positions, m3d.positions, atol=1e-4)


def test_xyz_roundtrip_perceives_bonds():
    m3d = conformers.embed(Molecule(ASPIRIN), seed=1)
    back = Molecule.from_xyz(m3d.to_xyz())
    assert back == Molecule(ASPIRIN)


def test_xyz_with_charge():
    acetate = conformers.embed(Molecule("CC(=O)[O-]"), seed=0)
    back = Molecule.from_xyz(acetate.to_xyz(), charge=-1)
    assert back.smiles == "CC(=O)[O-]"
    with pytest.raises(InvalidMoleculeError):
        Molecule.from_xyz(acetate.to_xyz(), charge=5)


def test_pymatgen_roundtrip():
    m3d = conformers.embed(Molecule("c1ccncc1"), seed=0)
    pmg = m3d.to_pymatgen()
    assert len(pmg) == m3d.num_atoms and pmg.charge == 0
    assert Molecule.from_pymatgen(pmg) == m3d


def test_pickle_for_process_pools():
    m = conformers.embed(Molecule("CCN"), seed=0).with_meta(name="ethylamine")
    back = pickle.loads(pickle.dumps(m))
    assert back == m and back.name == "ethylamine" and back.has_3d
    assert np.array_equal(back.positions, m.positions)
    flat = Molecule("OC(=O)Cc1ccc2[nH]ccc2c1")
    qed = flat.qed
    back = pickle.loads(pickle.dumps(flat))
    assert back == flat and not back.has_3d and back._cache["qed"] == qed  # cached properties travel along
    assert back.aromatic_rings == 2 and back.rings == 2  # ring perception survives


def test_no_coordinates_is_a_clear_error():
    with pytest.raises(ConformerError, match="embed"):
        _ = Molecule("CCO").positions
    with pytest.raises(ConformerError):
        Molecule("CCO").to_xyz()


def test_numeric_properties_on_corpus(moses_sample):
    for s in moses_sample[:50]:
        props = Molecule(s).properties(NUMERIC_PROPERTIES)
        assert all(np.isfinite(v) for v in props.values())


def test_standardize_verbs():
    assert largest_fragment(Molecule("CC(=O)[O-].[Na+]")).smiles == "CC(=O)[O-]"
    assert neutralize(Molecule("CC(=O)[O-]")).smiles == "CC(=O)O"


@pytest.mark.parametrize(
    "order", [("qed", "clogp", "mw"), ("clogp", "mr", "qed"), ("mw", "qed"), ("tpsa", "hbd", "qed")]
)
def test_qed_shares_descriptors_and_equals_rdkit_exactly(order):
    """The cached QED group reuses Crippen/MW and matches alerts in one catalog call; values stay RDKit's."""
    from rdkit.Chem import QED, Crippen, Descriptors

    smiles = [
        ASPIRIN,
        "O=[N+]([O-])c1ccc(C=O)cc1",  # nitro + aldehyde: several QED alerts
        "CC(=O)Oc1ccccc1C(=O)Cl",  # acyl halide alert
        "C1CCC2(CC1)OCCO2",  # no aromatic ring
        "c1ccc2c(c1)[nH]c1ccccc12",  # fused aromatics
        "[NH3+]CC(=O)[O-]",  # zwitterion
    ]
    for s in smiles:
        m, rd = Molecule(s), Chem.MolFromSmiles(s)
        values = {name: m.prop(name) for name in order}
        assert values["qed"] == QED.qed(rd)
        if "clogp" in values:
            assert values["clogp"] == Crippen.MolLogP(rd)
        assert m.prop("mw") == Descriptors.MolWt(rd)
    explicit = Chem.AddHs(Chem.MolFromSmiles(ASPIRIN))  # explicit hydrogens take RDKit's own path
    assert Molecule(explicit).prop("qed") == pytest.approx(QED.qed(explicit))
