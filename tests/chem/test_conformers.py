from __future__ import annotations

import numpy as np
import pytest

from workbench.chem import Molecule, conformers
from workbench.errors import ConformerError


def test_embed_is_deterministic_for_a_seed():
    a = conformers.embed("CC(=O)Oc1ccccc1C(=O)O", n=3, seed=42)
    b = conformers.embed("CC(=O)Oc1ccccc1C(=O)O", n=3, seed=42)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert a.has_3d and a.num_atoms == 21 and np.isfinite(a.meta["mmff_energy"])


def test_embed_relaxes_to_sane_bond_lengths():
    m = conformers.embed("CCO", seed=0)
    pos = m.positions
    rd = m.to_rdkit()
    for bond in rd.GetBonds():
        d = np.linalg.norm(pos[bond.GetBeginAtomIdx()] - pos[bond.GetEndAtomIdx()])
        assert 0.9 < d < 1.6


def test_embed_all_sorted_by_energy():
    confs = conformers.embed_all("CCCCCCO", n=8, seed=1)
    energies = [c.meta["mmff_energy"] for c in confs]
    assert len(confs) > 1 and energies == sorted(energies)


def test_embed_keeps_meta_and_identity():
    m = Molecule("c1ccccc1N", name="aniline")
    m3d = conformers.embed(m)
    assert m3d == m and m3d.name == "aniline"


def test_too_large_molecule_is_a_clear_error():
    with pytest.raises(ConformerError, match="max_heavy_atoms"):
        conformers.embed("C" * 600)
