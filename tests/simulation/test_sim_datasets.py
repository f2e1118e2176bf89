"""MD17-style sampling, time-block splits and the npz format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulation.datasets import LabelledSet, build_molecule_set, embed, mmff_langevin


def test_mmff_langevin_is_deterministic_and_samples_the_temperature():
    mol = embed("CCO", n_conformers=1, seed=1)
    a = mmff_langevin(mol, 0, temperature=400.0, n_frames=5, save_every=20, equilibration=50, seed=3)
    b = mmff_langevin(mol, 0, temperature=400.0, n_frames=5, save_every=20, equilibration=50, seed=3)
    c = mmff_langevin(mol, 0, temperature=400.0, n_frames=5, save_every=20, equilibration=50, seed=4)
    assert a.shape == (5, 9, 3) and np.isfinite(a).all()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    bonds = np.linalg.norm(a[:, 0] - a[:, 1], axis=-1)  # C-C bond stays a bond
    assert (bonds > 1.3).all() and (bonds < 1.8).all()


@pytest.fixture(scope="module")
def water_set():
    return build_molecule_set("water", "O", n_frames=40, n_trajectories=2, save_every=10, block=5, seed=0)


def test_molecule_set_has_labels_splits_and_provenance(water_set):
    assert water_set.n_frames == 40
    assert water_set.numbers.tolist()[:3] == [8, 1, 1]
    assert np.isfinite(water_set.energy).all() and np.isfinite(water_set.forces).all()
    assert set(np.unique(water_set.split)) <= {0, 1, 2}
    # splits are assigned by whole time blocks of 5 frames
    assert all(len(set(water_set.split[k : k + 5])) == 1 for k in range(0, 40, 5))
    meta = water_set.metadata
    assert meta["reference"] == "GFN2-xTB" and meta["temperature_K"] == 500.0 and meta["seed"] == 0
    assert meta["units"] == {"energy": "eV", "forces": "eV/Angstrom", "positions": "Angstrom", "time": "fs"}


def test_npz_round_trip_without_pickles(water_set, tmp_path):
    path = water_set.save(tmp_path / "water.npz")
    loaded = LabelledSet.load(path)
    assert np.allclose(loaded.positions, water_set.positions)  # positions were labelled at float32 precision
    assert np.allclose(loaded.energy, water_set.energy)
    assert loaded.smiles == ["O"] and loaded.metadata == json.loads(json.dumps(water_set.metadata))
    with np.load(path, allow_pickle=False) as f:
        assert f["positions"].dtype == np.float32


def test_select_and_concatenate(water_set):
    train = water_set.split_set("train")
    assert (train.split == 0).all() and train.positions.shape == (3 * train.n_frames, 3)
    numbers, positions, energy, forces = water_set.frame(3)
    assert positions.shape == forces.shape == (3, 3) and energy == water_set.energy[3]
    both = LabelledSet.concatenate([water_set.select([0, 1]), water_set.select([2])])
    assert both.n_frames == 3 and both.smiles == ["O"] and both.offsets[-1] == 9


def test_missing_file_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data-simulation"):
        LabelledSet.load(tmp_path / "nope.npz")
