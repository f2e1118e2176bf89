"""The chemistry core: molecules, sets, rules, properties, conformers and file I/O.

Every engine validates through this package; it imports nothing from the engines or the glue, and
importing it never pulls in torch, OpenMM or JAX.

>>> from workbench import chem
>>> chem.validate("CC(=O)Nc1ccc(O)cc1").ok
True
>>> chem.Molecule("CC(=O)Nc1ccc(O)cc1").tpsa
49.33
"""

from workbench.chem import conformers, io, properties
from workbench.chem.molecule import Molecule
from workbench.chem.moleculeset import MoleculeSet
from workbench.chem.properties import PROPERTIES
from workbench.chem.rules import DEFAULT_RULES, RULES, Finding, Rule, RuleSet, ValidationReport, validate
from workbench.chem.spec import DesignSpec, SpecReport
from workbench.chem.standardize import largest_fragment, neutralize

__all__ = [
    "Molecule",
    "MoleculeSet",
    "validate",
    "DesignSpec",
    "SpecReport",
    "ValidationReport",
    "Finding",
    "Rule",
    "RuleSet",
    "RULES",
    "DEFAULT_RULES",
    "PROPERTIES",
    "conformers",
    "io",
    "properties",
    "largest_fragment",
    "neutralize",
]
