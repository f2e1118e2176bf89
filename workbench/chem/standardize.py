"""Small standardization verbs (salt stripping, neutralization) on top of RDKit's MolStandardize.

>>> from workbench.chem import Molecule, largest_fragment
>>> largest_fragment(Molecule("CC(=O)[O-].[Na+]")).smiles
'CC(=O)[O-]'
"""

from __future__ import annotations

from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize

from workbench.chem.molecule import Molecule

__all__ = ["largest_fragment", "neutralize"]


def largest_fragment(mol: Molecule | str) -> Molecule:
    """Keep the largest organic fragment (drops counter-ions and solvents)."""
    mol = mol if isinstance(mol, Molecule) else Molecule(mol)
    if len(Chem.GetMolFrags(mol.graph)) == 1:
        return mol
    chooser = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)
    return Molecule(chooser.choose(mol.graph), meta=mol.meta)


def neutralize(mol: Molecule | str) -> Molecule:
    """Neutralize charges where a neutral form exists (RDKit's Uncharger)."""
    mol = mol if isinstance(mol, Molecule) else Molecule(mol)
    return Molecule(rdMolStandardize.Uncharger().uncharge(mol.graph), meta=mol.meta)
