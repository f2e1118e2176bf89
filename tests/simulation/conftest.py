"""Shared fixtures for the simulation tests: small float64 models and an ethanol geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ethanol() -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers and an MMFF94-relaxed geometry (Angstrom) of ethanol, hydrogens included."""
    from simulation.datasets import embed

    mol = embed("CCO", n_conformers=1, seed=7)
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    return numbers, np.array(mol.GetConformer().GetPositions())


@pytest.fixture()
def small_model():
    """A randomly initialised float64 potential for H, C, N, O (with non-trivial attention temperatures)."""
    from simulation.model import EquivariantPotential, PotentialConfig

    torch.manual_seed(0)
    model = EquivariantPotential(PotentialConfig(elements=[1, 6, 7, 8], features=16, layers=2, heads=2))
    with torch.no_grad():
        for message in model.messages:
            message.temperature_raw.uniform_(-2.0, 2.0)
    return model.double()
