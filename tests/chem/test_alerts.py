"""The alert pre-screen must never change a result: compare with RDKit's plain FilterCatalog."""

from __future__ import annotations

import csv
import os

import pytest
from rdkit import Chem, RDConfig
from rdkit.Chem import FilterCatalog

from workbench.chem.alerts import alert_catalog, molecule_arrays, molecule_features, pattern_requirements
from workbench.data import load_corpus


def _wehi_pains_sample(n: int) -> list[str]:
    path = os.path.join(RDConfig.RDDataDir, "Pains", "test_data", "wehi_mols.csv")
    with open(path) as fh:
        rows = list(csv.reader(fh))
    return [r[0] for r in rows[1 : n + 1] if r]


@pytest.fixture(scope="module")
def mixed_molecules() -> list[Chem.Mol]:
    smiles = (
        _wehi_pains_sample(700)
        + load_corpus("nci-5k", limit=300, seed=3)
        + load_corpus("chembl-drugs", limit=200, seed=4)
        + load_corpus("moses-test", limit=200, seed=5)
    )
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    return [m for m in mols if m is not None]


@pytest.mark.parametrize("name", ["PAINS", "BRENK", "NIH"])
def test_screened_matches_equal_filtercatalog(name, mixed_molecules):
    params = FilterCatalog.FilterCatalogParams()
    params.AddCatalog(getattr(FilterCatalog.FilterCatalogParams.FilterCatalogs, name))
    plain = FilterCatalog.FilterCatalog(params)
    catalog = alert_catalog(name)
    hits = 0
    for mol in mixed_molecules:
        expected = sorted(e.GetDescription() for e in plain.GetMatches(mol))
        got = sorted(d for d, _ in catalog.matches(mol))
        assert got == expected, Chem.MolToSmiles(mol)
        hits += bool(expected)
    assert hits > 20  # the sample really exercises the catalog


def test_screen_skips_most_pains_patterns(mixed_molecules):
    catalog = alert_catalog("PAINS")
    tried = [len(catalog.candidates(molecule_arrays(m))) for m in mixed_molecules[:300]]
    assert sum(tried) / len(tried) < 0.25 * len(catalog.entries)


def test_requirements_are_met_by_a_matching_molecule():
    query = Chem.MolFromSmarts("c1ccccc1C(=O)[N;H1]")
    req = pattern_requirements(query)
    assert req[("a", 6, True)] == 6 and req[("b", 2, 6, 8)] == 1
    feats = molecule_features(Chem.MolFromSmiles("c1ccccc1C(=O)NC"))
    assert all(feats.get(k, 0) >= n for k, n in req.items() if k[0] != "s")
