"""Bad input to ``simulation.md.run`` is refused with a clear error before any dynamics (or Context) starts."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from simulation.md import run
from workbench.errors import CheckpointError, InvalidMoleculeError, UnsupportedElementError

ETHANOL = Path(__file__).resolve().parents[2] / "simulation" / "checkpoints" / "ethanol"


@pytest.fixture()
def no_dynamics(monkeypatch):
    """Fail the test if run() gets as far as building an OpenMM Simulation."""
    import simulation.md

    def refuse(*args, **kwargs):
        raise AssertionError("bad input reached the OpenMM Simulation")

    monkeypatch.setattr(simulation.md.app, "Simulation", refuse)


def test_untrained_element_is_refused(small_model, no_dynamics):
    with pytest.raises(UnsupportedElementError, match="Cl"):
        run("CCCl", small_model, steps=10)


def test_rdkit_molecule_without_3d_coordinates_is_refused_with_a_hint(small_model, no_dynamics):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.Compute2DCoords(mol)
    with pytest.raises(InvalidMoleculeError, match="no 3D coordinates.*embed"):
        run(mol, small_model, steps=10)


def test_flat_sdf_file_is_refused(small_model, tmp_path, no_dynamics):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.Compute2DCoords(mol)
    path = tmp_path / "flat.sdf"
    Chem.MolToMolFile(mol, str(path))
    with pytest.raises(InvalidMoleculeError, match="no 3D coordinates"):
        run(path, small_model, steps=10)


def test_positions_without_three_columns_are_refused(small_model, ethanol, no_dynamics):
    numbers, positions = ethanol
    with pytest.raises(InvalidMoleculeError, match="shape"):
        run((numbers, positions[:, :2]), small_model, steps=10)


def test_overlapping_atoms_are_refused(small_model, ethanol, no_dynamics):
    numbers, positions = ethanol
    x = positions.copy()
    x[1] = x[0] + [0.2, 0.0, 0.0]
    with pytest.raises(InvalidMoleculeError, match="overlap"):
        run((numbers, x), small_model, steps=10)


def test_coordinates_in_nanometres_are_caught_as_overlaps(small_model, ethanol, no_dynamics):
    numbers, positions = ethanol
    with pytest.raises(InvalidMoleculeError, match="units"):
        run((numbers, positions / 10.0), small_model, steps=10)


def test_nan_positions_are_refused(small_model, ethanol, no_dynamics):
    numbers, positions = ethanol
    x = positions.copy()
    x[3, 1] = np.nan
    with pytest.raises(InvalidMoleculeError, match="NaN"):
        run((numbers, x), small_model, steps=10)


def test_corrupt_checkpoint_is_refused_naming_the_file(ethanol, tmp_path, no_dynamics):
    folder = tmp_path / "ethanol"
    shutil.copytree(ETHANOL, folder, ignore=shutil.ignore_patterns("training_state.pt"))
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        run(ethanol, folder, steps=10)


def test_checkpoint_whose_config_does_not_match_its_weights_is_refused(ethanol, tmp_path, no_dynamics):
    import json

    folder = tmp_path / "ethanol"
    shutil.copytree(ETHANOL, folder, ignore=shutil.ignore_patterns("training_state.pt"))
    config = json.loads((folder / "config.json").read_text())
    config["features"] = 32
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match"):
        run(ethanol, folder, steps=10)


def test_unknown_potential_is_refused(ethanol, no_dynamics):
    with pytest.raises(CheckpointError, match="no such potential"):
        run(ethanol, "no-such-potential", steps=10)


@pytest.mark.parametrize("timestep", [0.0, -0.5, float("nan")])
def test_non_positive_timestep_is_refused(small_model, ethanol, timestep, no_dynamics):
    with pytest.raises(ValueError, match="timestep_fs must be positive"):
        run(ethanol, small_model, timestep_fs=timestep, steps=10)


def test_non_positive_temperature_is_refused(small_model, ethanol, no_dynamics):
    with pytest.raises(ValueError, match="temperature must be positive"):
        run(ethanol, small_model, temperature=-10.0, steps=10)


def test_timestep_above_two_fs_warns_but_runs(small_model, ethanol):
    with pytest.warns(UserWarning, match="above 2 fs"):
        traj = run(ethanol, small_model, protocol="NVT", timestep_fs=2.5, steps=4, report_every=2, minimise=False)
    assert traj.positions.shape[0] == 3


def test_safe_timestep_does_not_warn(small_model, ethanol):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*above 2 fs")
        run(ethanol, small_model, protocol="NVT", timestep_fs=0.5, steps=2, report_every=2, minimise=False)
