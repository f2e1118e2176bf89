from __future__ import annotations

import builtins
import importlib.util

import pytest

from workbench.chem import Molecule
from workbench.data import CORPORA, corpus_path, iter_corpus, load_corpus, load_qm9
from workbench.errors import DataUnavailableError


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_every_corpus_loads_real_molecules(name):
    smiles = load_corpus(name, limit=20)
    assert len(smiles) == 20
    mols = load_corpus(name, limit=20, molecules=True)
    assert len(mols) >= 15 and all(isinstance(m, Molecule) for m in mols)


def test_sampling_is_deterministic_and_streams():
    a = load_corpus("moses-test", limit=50, seed=7)
    b = load_corpus("moses-test", limit=50, seed=7)
    assert a == b and a != load_corpus("moses-test", limit=50)
    stream = iter_corpus("moses-train")
    assert next(stream) and next(stream)  # no full read needed to start


def test_qm9_geometries():
    records = load_qm9(limit=5)
    water = next(r for r in records if r["smiles"] == "O")
    assert water["elements"] == ["O", "H", "H"] and len(water["positions"]) == 3
    assert water["InternalEnergy_0K_au"] < -76


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name == "moses" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(DataUnavailableError, match="pip install --no-deps molsets==0.3.1"):
        corpus_path("moses-train")
    _ = builtins


def test_unknown_corpus():
    with pytest.raises(KeyError, match="available"):
        load_corpus("zinc-everything")
