"""Reading and writing molecules: SMILES, SDF, XYZ and PDB, both directions.

Readers of multi-record files never stop at a bad record: it is listed in ``result.failures`` and the
good records are kept.

>>> from workbench.chem import io, Molecule
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "x.smi")
>>> io.write_smiles([Molecule("CCO"), Molecule("c1ccccc1")], path)
>>> [m.smiles for m in io.read_smiles(path)]
['CCO', 'c1ccccc1']
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from rdkit import Chem

from workbench.chem.molecule import Molecule
from workbench.errors import InvalidMoleculeError

__all__ = [
    "ReadFailure",
    "ReadResult",
    "read",
    "write",
    "read_smiles",
    "write_smiles",
    "read_sdf",
    "write_sdf",
    "read_xyz",
    "write_xyz",
    "read_pdb",
    "write_pdb",
]


@dataclass(frozen=True)
class ReadFailure:
    """A record that could not be read: its position (0-based), what it was, and why."""

    index: int
    source: str
    reason: str

    def __str__(self) -> str:
        return f"record {self.index} ({self.source!r}): {self.reason}"


@dataclass
class ReadResult(Sequence[Molecule]):
    """Molecules read from a file (in file order, duplicates kept) plus the records that failed."""

    molecules: list[Molecule] = field(default_factory=list)
    failures: list[ReadFailure] = field(default_factory=list)
    path: str = ""

    def __len__(self) -> int:
        return len(self.molecules)

    def __iter__(self) -> Iterator[Molecule]:
        return iter(self.molecules)

    def __getitem__(self, i):
        return self.molecules[i]

    def to_set(self):
        from workbench.chem.moleculeset import MoleculeSet

        return MoleculeSet(self.molecules, name=os.path.basename(self.path))

    def __repr__(self) -> str:
        return f"ReadResult({len(self.molecules)} molecule(s), {len(self.failures)} failure(s) from {self.path!r})"


def _open_text(path: str | os.PathLike) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError as exc:
        raise InvalidMoleculeError(str(path), f"cannot read file: {exc.strerror}") from None


# ---------------------------------------------------------------------- SMILES
def read_smiles(path: str | os.PathLike, smiles_column: str | int = 0, delimiter: str | None = None) -> ReadResult:
    """Read a SMILES file: one record per line, SMILES first, an optional name after whitespace.

    ``.csv`` files are read with a header; ``smiles_column`` names (or indexes) the SMILES column.
    """
    text = _open_text(path)
    result = ReadResult(path=str(path))
    lines = text.splitlines()
    is_csv = str(path).endswith(".csv") or delimiter == ","
    header: list[str] = []
    if is_csv and lines:
        header = [h.strip() for h in lines[0].split(",")]
        lines = lines[1:]
        if isinstance(smiles_column, str):
            lowered = [h.lower() for h in header]
            if smiles_column.lower() in lowered:
                smiles_column = lowered.index(smiles_column.lower())
            elif smiles_column == "0" or smiles_column == 0:
                smiles_column = 0
            else:
                raise InvalidMoleculeError(str(path), f"no column {smiles_column!r} in header {header}")
    col = smiles_column if isinstance(smiles_column, int) else 0
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(",") if is_csv else line.split(delimiter)
        if col >= len(parts):
            result.failures.append(ReadFailure(i, line[:60], f"no column {col}"))
            continue
        smi = parts[col].strip()
        name = parts[1].strip() if not is_csv and len(parts) > 1 else ""
        if smi.lower() == "smiles" and i == 0:
            continue  # a header line in a .smi file
        try:
            meta = {"name": name} if name else {}
            result.molecules.append(Molecule.from_smiles(smi, **meta))
        except InvalidMoleculeError as exc:
            result.failures.append(ReadFailure(i, smi[:60], exc.reason))
    return result


def write_smiles(mols: Iterable[Molecule], path: str | os.PathLike) -> None:
    with open(path, "w") as fh:
        for m in mols:
            fh.write(f"{m.smiles} {m.name}".rstrip() + "\n")


# ---------------------------------------------------------------------- SDF
def _split_sdf(text: str) -> list[str]:
    records = text.split("$$$$")
    out = []
    for rec in records:
        rec = rec.lstrip("\r\n") if rec.startswith(("\n", "\r\n")) else rec
        if rec.strip():
            out.append(rec)
    return out


def read_sdf(path: str | os.PathLike) -> ReadResult:
    """Read every record of an SDF file; bad records are reported in ``failures``, good ones kept.

    SD data fields are kept in each molecule's ``meta``; hydrogens and 3D coordinates are preserved.
    """
    text = _open_text(path)
    result = ReadResult(path=str(path))
    for i, block in enumerate(_split_sdf(text)):
        name = block.split("\n", 1)[0].strip()
        try:
            mol = Molecule.from_molblock(block)
        except InvalidMoleculeError as exc:
            result.failures.append(ReadFailure(i, name or f"record {i}", exc.reason))
            continue
        fields = _sd_fields(block)
        result.molecules.append(mol.with_meta(**fields) if fields else mol)
    return result


def _sd_fields(block: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    if "M  END" not in block:
        return fields
    tail = block.split("M  END", 1)[1]
    lines = tail.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(">") and "<" in line and ">" in line[line.index("<") :]:
            key = line[line.index("<") + 1 : line.index(">", line.index("<"))]
            values = []
            i += 1
            while i < len(lines) and lines[i].strip():
                values.append(lines[i])
                i += 1
            fields[key] = "\n".join(values)
        i += 1
    return fields


def write_sdf(mols: Iterable[Molecule], path: str | os.PathLike, properties: Sequence[str] = ()) -> None:
    """Write molecules (with coordinates when they have them) and properties as SD fields."""
    writer = Chem.SDWriter(str(path))
    try:
        for m in mols:
            rd = m.to_rdkit()
            if m.name:
                rd.SetProp("_Name", m.name)
            rd.SetProp("smiles", m.smiles)
            for p in properties:
                rd.SetProp(p, str(m.prop(p)))
            for key, value in m.meta.items():
                if key != "name" and isinstance(value, str | int | float | bool):
                    rd.SetProp(str(key), str(value))
            writer.write(rd)
    finally:
        writer.close()


# ---------------------------------------------------------------------- XYZ / PDB
def read_xyz(path: str | os.PathLike, charge: int = 0) -> Molecule:
    """Read a single-molecule XYZ file; bonds are perceived for the given total ``charge``."""
    return Molecule.from_xyz(_open_text(path), charge=charge)


def write_xyz(mol: Molecule, path: str | os.PathLike) -> None:
    with open(path, "w") as fh:
        fh.write(mol.to_xyz())


def read_pdb(path: str | os.PathLike) -> Molecule:
    """Read a small-molecule PDB file (CONECT records or proximity bonding), keeping hydrogens."""
    raw = Chem.MolFromPDBBlock(_open_text(path), sanitize=False, removeHs=False)
    if raw is None or raw.GetNumAtoms() == 0:
        raise InvalidMoleculeError(str(path), "not a parseable PDB file")
    return Molecule.from_rdkit(raw)


def write_pdb(mol: Molecule, path: str | os.PathLike) -> None:
    with open(path, "w") as fh:
        fh.write(mol.to_pdb())


# ---------------------------------------------------------------------- by extension
def read(path: str | os.PathLike, **kwargs) -> ReadResult:
    """Read any supported file by extension (.smi/.smiles/.csv/.txt, .sdf/.mol, .xyz, .pdb)."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext in (".smi", ".smiles", ".csv", ".txt"):
        return read_smiles(path, **kwargs)
    if ext in (".sdf", ".mol", ".sd"):
        return read_sdf(path)
    if ext in (".xyz", ".pdb"):
        reader = read_xyz if ext == ".xyz" else read_pdb
        result = ReadResult(path=str(path))
        try:
            result.molecules.append(reader(path, **kwargs))
        except InvalidMoleculeError as exc:
            result.failures.append(ReadFailure(0, str(path), exc.reason))
        return result
    raise InvalidMoleculeError(str(path), f"unknown file type {ext!r}; use .smi, .csv, .sdf, .xyz or .pdb")


def write(mols: Molecule | Iterable[Molecule], path: str | os.PathLike) -> None:
    """Write by extension; .xyz and .pdb take a single molecule."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext in (".xyz", ".pdb"):
        if not isinstance(mols, Molecule):
            raise ValueError(f"{ext} holds one molecule; write them one file each")
        (write_xyz if ext == ".xyz" else write_pdb)(mols, path)
        return
    items = [mols] if isinstance(mols, Molecule) else list(mols)
    if ext in (".smi", ".smiles", ".txt"):
        write_smiles(items, path)
    elif ext in (".sdf", ".sd", ".mol"):
        write_sdf(items, path)
    elif ext == ".csv":
        from workbench.chem.moleculeset import MoleculeSet

        MoleculeSet(items).to_csv(path)
    else:
        raise ValueError(f"unknown file type {ext!r}; use .smi, .csv, .sdf, .xyz or .pdb")
