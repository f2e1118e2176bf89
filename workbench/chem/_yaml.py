"""Reading YAML (or JSON) documents given as a path or as text, with the safe loader only."""

from __future__ import annotations

import os
from typing import Any

from rdkit import Chem

from workbench.errors import SpecError

__all__ = ["load_yaml", "is_element_symbol"]


def load_yaml(source: str | os.PathLike, field: str) -> Any:
    """Parse a YAML file path or YAML text; a syntax error raises SpecError naming ``field``."""
    import yaml

    text = str(source)
    if os.path.exists(text):
        with open(text) as fh:
            text = fh.read()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(field, f"not valid YAML: {exc}") from None


def is_element_symbol(symbol: object) -> bool:
    """True for a real element symbol such as ``"C"`` or ``"Cl"``."""
    try:
        return Chem.GetPeriodicTable().GetAtomicNumber(str(symbol)) > 0
    except RuntimeError:
        return False
