"""Molecular properties: one registry, one name per property.

The names here are the vocabulary shared by design specs, result tables and scoring.

>>> from rdkit import Chem
>>> round(compute("mw", Chem.MolFromSmiles("CCO")), 2)
46.07
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass

from rdkit import Chem, RDConfig
from rdkit.Chem import QED, Descriptors, rdMolDescriptors

__all__ = ["Property", "PROPERTIES", "NUMERIC_PROPERTIES", "compute", "sa_score", "describe"]


@dataclass(frozen=True)
class Property:
    """A named molecular property: how to compute it and what it means."""

    name: str
    label: str
    func: Callable[[Chem.Mol], float | int | str]
    unit: str = ""
    numeric: bool = True


@functools.lru_cache(maxsize=1)
def _sascorer():
    """Load RDKit's Contrib SA_Score module (Ertl & Schuffenhauer) from the RDKit installation."""
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    if not os.path.exists(path):  # pragma: no cover - depends on the RDKit build
        raise ImportError(f"RDKit Contrib SA_Score not found at {path}; reinstall rdkit from PyPI or conda-forge")
    spec = importlib.util.spec_from_file_location("_workbench_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    module.readFragmentScores()
    return module


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility score, 1 (easy) to 10 (hard)."""
    return float(_sascorer().calculateScore(mol))


def _formal_charge(mol: Chem.Mol) -> int:
    return int(Chem.GetFormalCharge(mol))


def _crippen(mol: Chem.Mol, known: dict[str, float] | None = None) -> dict[str, float]:
    logp, mr = rdMolDescriptors.CalcCrippenDescriptors(mol)
    return {"clogp": logp, "mr": mr}


@functools.lru_cache(maxsize=1)
def _qed_alert_catalog():
    """RDKit's QED structural alerts as one FilterCatalog: one C++ call instead of ~120 Python-level matches."""
    from rdkit.Chem import FilterCatalog

    catalog = FilterCatalog.FilterCatalog()
    for i, alert in enumerate(QED.StructuralAlerts):
        catalog.AddEntry(FilterCatalog.FilterCatalogEntry(f"qed_alert_{i}", FilterCatalog.SmartsMatcher(alert)))
    return catalog


def _qed(mol: Chem.Mol, known: dict[str, float] | None = None) -> dict[str, float]:
    """QED (RDKit's ``QED.qed``, same value) plus the cLogP, MR and MW it needs, for the property cache.

    ``QED.properties`` recomputes Crippen logP and MW and matches its ~120 structural alerts one Python
    call at a time; here Crippen is computed once (or taken from ``known``) and shared with ``clogp``/``mr``,
    TPSA and HBD come from ``known`` when cached (the same RDKit functions as the ``tpsa``/``hbd`` properties),
    and the alerts are matched by one FilterCatalog (the count of distinct alerts that match, as in RDKit).
    """
    if any(atom.GetAtomicNum() == 1 for atom in mol.GetAtoms()):  # explicit H: RDKit's own path, unshared
        return {"qed": QED.qed(mol)}
    known = known or {}
    crippen = {"clogp": known["clogp"], "mr": known["mr"]} if "clogp" in known and "mr" in known else _crippen(mol)
    mw = known["mw"] if "mw" in known else Descriptors.MolWt(mol)
    props = QED.QEDproperties(
        MW=mw,
        ALOGP=crippen["clogp"],
        HBA=sum(len(mol.GetSubstructMatches(p)) for p in QED.Acceptors if mol.HasSubstructMatch(p)),
        HBD=known["hbd"] if "hbd" in known else rdMolDescriptors.CalcNumHBD(mol),
        PSA=known["tpsa"] if "tpsa" in known else rdMolDescriptors.CalcTPSA(mol),
        ROTB=rdMolDescriptors.CalcNumRotatableBonds(mol, rdMolDescriptors.NumRotatableBondsOptions.Strict),
        AROM=len(Chem.GetSSSR(Chem.DeleteSubstructs(Chem.Mol(mol), QED.AliphaticRings))),
        ALERTS=len(_qed_alert_catalog().GetMatches(mol)),
    )
    return {"qed": QED.qed(mol, qedProperties=props), "mw": mw, **crippen}


GROUPS: dict[str, Callable[..., dict[str, float]]] = {"clogp": _crippen, "mr": _crippen, "qed": _qed}
"""Properties computed together, each group ``f(mol, known=cache) -> {name: value}`` (Molecule caches all of
them at once; ``known`` holds the values already cached, which a group may reuse)."""


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in [
        Property("mw", "molecular weight", Descriptors.MolWt, "g/mol"),
        Property("exact_mass", "monoisotopic mass", Descriptors.ExactMolWt, "Da"),
        Property("clogp", "Crippen cLogP", lambda m: _crippen(m)["clogp"]),
        Property("mr", "Crippen molar refractivity", lambda m: _crippen(m)["mr"]),
        Property("tpsa", "topological polar surface area", rdMolDescriptors.CalcTPSA, "Å²"),
        Property("hbd", "H-bond donors (Lipinski)", rdMolDescriptors.CalcNumHBD),
        Property("hba", "H-bond acceptors (Lipinski)", rdMolDescriptors.CalcNumHBA),
        Property("rotb", "rotatable bonds", rdMolDescriptors.CalcNumRotatableBonds),
        Property("rings", "ring count", rdMolDescriptors.CalcNumRings),
        Property("aromatic_rings", "aromatic ring count", rdMolDescriptors.CalcNumAromaticRings),
        Property("fsp3", "fraction sp3 carbons", rdMolDescriptors.CalcFractionCSP3),
        Property("charge", "net formal charge", _formal_charge, "e"),
        Property("heavy_atoms", "heavy atom count", lambda m: m.GetNumHeavyAtoms()),
        Property("atoms", "atom count including hydrogens", rdMolDescriptors.CalcNumAtoms),
        Property("formula", "molecular formula", rdMolDescriptors.CalcMolFormula, numeric=False),
        Property("qed", "quantitative estimate of drug-likeness", lambda m: _qed(m)["qed"]),
        Property("sa", "synthetic accessibility (1 easy - 10 hard)", sa_score),
    ]
}

NUMERIC_PROPERTIES: tuple[str, ...] = tuple(n for n, p in PROPERTIES.items() if p.numeric)


def compute(name: str, mol: Chem.Mol) -> float | int | str:
    """Compute one property by name on a sanitized RDKit molecule."""
    try:
        prop = PROPERTIES[name]
    except KeyError:
        known = ", ".join(PROPERTIES)
        raise KeyError(f"unknown property {name!r}; known properties are: {known}") from None
    value = prop.func(mol)
    if isinstance(value, bool):
        return int(value)
    return value


def describe() -> dict[str, str]:
    """Map each property name to a human-readable description (with unit)."""
    return {n: p.label + (f" [{p.unit}]" if p.unit else "") for n, p in PROPERTIES.items()}
