"""`MoleculeSet`: an ordered collection of Molecules, deduplicated by identity (canonical SMILES).

>>> from workbench.chem import MoleculeSet
>>> s = MoleculeSet(["CCO", "OCC", "c1ccccc1"])
>>> len(s), s.smiles
(2, ['CCO', 'c1ccccc1'])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, overload

from workbench.chem.molecule import Molecule

__all__ = ["MoleculeSet", "DEFAULT_COLUMNS"]

DEFAULT_COLUMNS = ("mw", "clogp", "tpsa", "hbd", "hba", "rotb", "rings", "aromatic_rings", "qed", "sa")


class MoleculeSet(Sequence[Molecule]):
    """Ordered, deduplicated molecules with table export and a notebook grid display.

    Adding a molecule that is already present keeps the first one. Items may be given as
    :class:`Molecule` or SMILES strings (parsed strictly; an invalid SMILES raises InvalidMoleculeError).
    """

    def __init__(self, molecules: Iterable[Molecule | str] = (), *, name: str = ""):
        self._items: list[Molecule] = []
        self._index: dict[str, int] = {}
        self.name = name
        self.extend(molecules)

    # ------------------------------------------------------------------ building
    def add(self, mol: Molecule | str) -> bool:
        """Add a molecule; returns False when an identical one is already present."""
        if not isinstance(mol, Molecule):
            mol = Molecule(mol)
        if mol.smiles in self._index:
            return False
        self._index[mol.smiles] = len(self._items)
        self._items.append(mol)
        return True

    def extend(self, molecules: Iterable[Molecule | str]) -> int:
        """Add many; returns how many were new."""
        return sum(self.add(m) for m in molecules)

    # ------------------------------------------------------------------ sequence protocol
    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Molecule]:
        return iter(self._items)

    @overload
    def __getitem__(self, key: int) -> Molecule: ...
    @overload
    def __getitem__(self, key: slice) -> MoleculeSet: ...
    @overload
    def __getitem__(self, key: str) -> Molecule: ...

    def __getitem__(self, key):
        if isinstance(key, slice):
            return MoleculeSet(self._items[key], name=self.name)
        if isinstance(key, str):
            smiles = key if key in self._index else Molecule(key).smiles
            try:
                return self._items[self._index[smiles]]
            except KeyError:
                raise KeyError(f"{key!r} is not in this MoleculeSet") from None
        return self._items[key]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Molecule):
            return item.smiles in self._index
        if isinstance(item, str):
            if item in self._index:
                return True
            try:
                return Molecule(item).smiles in self._index
            except ValueError:
                return False
        return False

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MoleculeSet):
            return self.smiles == other.smiles
        return NotImplemented

    __hash__ = None  # mutable

    def __add__(self, other: Iterable[Molecule | str]) -> MoleculeSet:
        out = MoleculeSet(self._items, name=self.name)
        out.extend(other)
        return out

    @property
    def smiles(self) -> list[str]:
        return [m.smiles for m in self._items]

    # ------------------------------------------------------------------ selection
    def filter(self, condition: Callable[[Molecule], Any] | Any) -> MoleculeSet:
        """Keep molecules for which ``condition(mol)`` is truthy.

        ``condition`` may also be any object with ``check(mol)`` returning a report with ``ok``
        (e.g. a DesignSpec or a RuleSet-bound validator).
        """
        if hasattr(condition, "check") and not callable(condition) or hasattr(condition, "check"):
            keep = [m for m in self._items if condition.check(m).ok]
        else:
            keep = [m for m in self._items if condition(m)]
        return MoleculeSet(keep, name=self.name)

    def sort_by(self, key: str | Callable[[Molecule], Any], reverse: bool = False) -> MoleculeSet:
        """Sorted copy by a property name (``"qed"``), a meta key (``"score"``) or a callable."""
        if callable(key):
            func = key
        else:

            def func(m: Molecule, _k: str = key) -> Any:
                return m.meta[_k] if _k in m.meta else m.prop(_k)

        return MoleculeSet(sorted(self._items, key=func, reverse=reverse), name=self.name)

    # ------------------------------------------------------------------ export
    def to_records(self, properties: Sequence[str] = DEFAULT_COLUMNS) -> list[dict[str, Any]]:
        rows = []
        for m in self._items:
            row: dict[str, Any] = {"smiles": m.smiles}
            if m.name:
                row["name"] = m.name
            for key, value in m.meta.items():
                if key == "name":
                    continue
                if isinstance(value, str | int | float | bool) or value is None:
                    row[key] = value
                elif key == "validation" and hasattr(value, "ok"):
                    row["valid"] = value.ok
                    row["findings"] = value.summary()
            for p in properties:
                row[p] = m.prop(p)
            rows.append(row)
        return rows

    def to_pandas(self, properties: Sequence[str] = DEFAULT_COLUMNS):
        """A DataFrame with one row per molecule: SMILES, name, scalar annotations and properties."""
        import pandas as pd

        rows = self.to_records(properties)
        return pd.DataFrame(rows, columns=_columns(rows))

    def to_csv(self, path: str | os.PathLike, properties: Sequence[str] = DEFAULT_COLUMNS) -> None:
        self.to_pandas(properties).to_csv(path, index=False)

    def to_parquet(self, path: str | os.PathLike, properties: Sequence[str] = DEFAULT_COLUMNS) -> None:
        self.to_pandas(properties).to_parquet(path, index=False)

    def to_sdf(self, path: str | os.PathLike, properties: Sequence[str] = DEFAULT_COLUMNS) -> None:
        from workbench.chem.io import write_sdf

        write_sdf(self._items, path, properties=properties)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        head = ", ".join(m.smiles for m in self._items[:5])
        more = f", ... ({len(self)} total)" if len(self) > 5 else ""
        return f"MoleculeSet([{head}{more}])"

    def _repr_html_(self) -> str:
        from workbench.chem.depict import grid_html

        return grid_html(self._items)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for row in rows:
        for k in row:
            cols.setdefault(k, None)
    return list(cols) or ["smiles"]
