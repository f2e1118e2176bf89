"""Molecular design and simulation workbench.

``import workbench as wb`` is fast: sub-packages load on first use, so importing the chemistry core
never pulls in torch, OpenMM or JAX.

>>> import workbench as wb
>>> wb.Molecule("CCO").smiles
'CCO'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Molecule": ("workbench.chem", "Molecule"),
    "MoleculeSet": ("workbench.chem", "MoleculeSet"),
    "validate": ("workbench.chem", "validate"),
    "RuleSet": ("workbench.chem", "RuleSet"),
    "ValidationReport": ("workbench.chem", "ValidationReport"),
    "load_corpus": ("workbench.data", "load_corpus"),
    "DesignSpec": ("workbench.chem", "DesignSpec"),
    "campaign": ("workbench.api", "campaign"),
    "generate": ("workbench.api", "generate"),
    "propose": ("workbench.api", "propose"),
    "simulate": ("workbench.api", "simulate"),
    "JobConfig": ("workbench.jobs", "JobConfig"),
    "chem": ("workbench.chem", None),
    "data": ("workbench.data", None),
    "errors": ("workbench.errors", None),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
