"""3D structures: RDKit ETKDGv3 embedding followed by MMFF94 pre-relaxation.

>>> from workbench.chem import Molecule, conformers
>>> m3d = conformers.embed(Molecule("CCO"), seed=7)
>>> m3d.has_3d, m3d.num_atoms
(True, 9)
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

from workbench.chem.molecule import Molecule
from workbench.errors import ConformerError

__all__ = ["embed", "embed_all"]

MAX_HEAVY_ATOMS = 200


def _embed_mol(
    molecule: Molecule, n: int, seed: int, max_heavy_atoms: int, timeout: int
) -> tuple[Chem.Mol, list[int], list[float]]:
    if not isinstance(molecule, Molecule):
        molecule = Molecule(molecule)
    heavy = molecule.prop("heavy_atoms")
    if heavy > max_heavy_atoms:
        raise ConformerError(
            molecule.smiles,
            f"{heavy} heavy atoms is above the embedding limit of {max_heavy_atoms}; "
            "pass max_heavy_atoms=... to try anyway (it may take minutes)",
        )
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    mol = Chem.AddHs(molecule.to_rdkit() if not molecule.has_3d else Chem.RemoveHs(molecule.to_rdkit()))
    mol.RemoveAllConformers()
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = 1
    params.pruneRmsThresh = 0.1 if n > 1 else -1.0
    params.timeout = int(timeout)
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=int(n), params=params))
    if not ids:
        params.useRandomCoords = True
        ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=int(n), params=params))
    if not ids:
        raise ConformerError(
            molecule.smiles,
            "ETKDGv3 found no 3D embedding (distance bounds could not be satisfied); "
            "check ring strain / stereochemistry, or try another seed",
        )
    energies = [float("nan")] * len(ids)
    if rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        results = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=500)
        energies = [float(e) for _, e in results]
    elif rdForceFieldHelpers.UFFHasAllMoleculeParams(mol):
        results = rdForceFieldHelpers.UFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=500)
        energies = [float(e) for _, e in results]
    for cid in ids:
        if not np.isfinite(mol.GetConformer(cid).GetPositions()).all():
            raise ConformerError(molecule.smiles, "embedding produced non-finite coordinates")
    return mol, ids, energies


def embed(
    molecule: Molecule | str, n: int = 1, seed: int = 0, *, max_heavy_atoms: int = MAX_HEAVY_ATOMS, timeout: int = 60
) -> Molecule:
    """Embed ``n`` conformers (ETKDGv3 + MMFF94 relaxation) and return the lowest-energy one.

    Deterministic for a given ``seed``. Hydrogens are added explicitly. Raises ConformerError when
    no embedding is found. ``meta["mmff_energy"]`` holds the relaxed MMFF energy (kcal/mol) when known.
    """
    mol, ids, energies = _embed_mol(
        molecule if isinstance(molecule, Molecule) else Molecule(molecule), n, seed, max_heavy_atoms, timeout
    )
    order = np.argsort([e if np.isfinite(e) else np.inf for e in energies], kind="stable")
    best = ids[int(order[0])]
    out = Chem.Mol(mol)
    keep = out.GetConformer(best)
    conf = Chem.Conformer(keep)
    out.RemoveAllConformers()
    conf.SetId(0)
    out.AddConformer(conf, assignId=False)
    base = molecule if isinstance(molecule, Molecule) else Molecule(molecule)
    meta = dict(base.meta)
    meta.update(mmff_energy=energies[int(order[0])], embed_seed=int(seed))
    return Molecule(out, meta=meta)


def embed_all(
    molecule: Molecule | str, n: int = 10, seed: int = 0, *, max_heavy_atoms: int = MAX_HEAVY_ATOMS, timeout: int = 60
) -> list[Molecule]:
    """Embed up to ``n`` distinct conformers, sorted by MMFF energy (lowest first)."""
    base = molecule if isinstance(molecule, Molecule) else Molecule(molecule)
    mol, ids, energies = _embed_mol(base, n, seed, max_heavy_atoms, timeout)
    out = []
    for k in np.argsort([e if np.isfinite(e) else np.inf for e in energies], kind="stable"):
        single = Chem.Mol(mol)
        conf = Chem.Conformer(mol.GetConformer(ids[int(k)]))
        single.RemoveAllConformers()
        single.AddConformer(conf, assignId=True)
        out.append(Molecule(single, meta={**base.meta, "mmff_energy": energies[int(k)], "embed_seed": int(seed)}))
    return out
