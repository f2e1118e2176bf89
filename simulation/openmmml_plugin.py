"""openmm-ml registration: the workbench potentials by name in ``openmmml.MLPotential``.

>>> from openmmml import MLPotential                                             # doctest: +SKIP
>>> system = MLPotential("workbench-organic").createSystem(pdb.topology)         # doctest: +SKIP

openmm-ml finds this module through the ``openmmml.potentials`` entry points in ``pyproject.toml``:
``workbench-organic``, ``workbench-ethanol``, ``workbench-aspirin`` and their quantized ``-w4a8`` variants, plus
``workbench`` with an explicit ``potential=`` (a checkpoint folder or a loaded model). Every name is resolved by
:func:`simulation.openmm.load_potential`, so a checkpoint shipped later under one of these names works without
touching this file; a name without a checkpoint fails in ``MLPotential(name)`` with the shipped names listed.

The potential is added as the same ``openmm.PythonForce`` that :func:`simulation.openmm.create_system` uses
(periodic when the Topology has box vectors). Options of ``createSystem``:

- ``atoms=[...]``: apply the potential to these atom indices only (e.g. a ligand); other particles get no force
  from it. ``createMixedSystem(topology, mm_system, atoms)`` passes its subset the same way.
- ``precision="double"`` (default) or ``"single"``.

openmm-ml imports every plug-in while ``openmmml.mlpotential`` itself is still being imported, so this module
must not import openmm-ml at the top (that would be circular when this module is imported first): the factory
follows openmm-ml's one-method protocol (``createImpl``) and the ``MLPotentialImpl`` subclass is built on first
use. torch and the model load when a potential is created.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

import openmm
import openmm.app

__all__ = ["WorkbenchPotentialImplFactory", "REGISTERED_NAMES"]  # WorkbenchPotentialImpl: built on first use

REGISTERED_NAMES = (
    "workbench",
    "workbench-organic",
    "workbench-ethanol",
    "workbench-aspirin",
    "workbench-organic-w4a8",
    "workbench-ethanol-w4a8",
    "workbench-aspirin-w4a8",
)
_PRECISIONS = ("double", "single")
_EMBEDDING_OPTIONS = {"linkAtomDistances"}  # read by openmm-ml's embeddings, then passed on to addForces


class WorkbenchPotentialImplFactory:
    """openmm-ml's ``MLPotentialImplFactory`` protocol: creates the impl for ``MLPotential("workbench-...")``."""

    def createImpl(self, name: str, **args):
        return _impl_class()(name, **args)


def __getattr__(name: str):
    if name == "WorkbenchPotentialImpl":
        return _impl_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _impl_class() -> type:
    from openmmml.mlpotential import MLPotentialImpl

    return type("WorkbenchPotentialImpl", (_WorkbenchPotentialImpl, MLPotentialImpl), {"__module__": __name__})


class _WorkbenchPotentialImpl:
    """A workbench equivariant potential inside an OpenMM System.

    >>> potential = MLPotential("workbench-ethanol")                             # doctest: +SKIP
    >>> system = potential.createSystem(topology, precision="double")            # doctest: +SKIP

    ``potential`` (only with the generic name ``"workbench"``) is a checkpoint folder or an
    :class:`~simulation.model.EquivariantPotential`.
    """

    def __init__(self, name: str, potential: str | os.PathLike | object | None = None, precision: str = "double"):
        import torch

        from simulation.openmm import load_potential

        if name == "workbench":
            if potential is None:
                raise ValueError(
                    'MLPotential("workbench") needs potential=<checkpoint folder or model>; or use a named '
                    'potential such as MLPotential("workbench-organic")'
                )
            source = potential
        else:
            if potential is not None:
                raise ValueError(
                    f'MLPotential("{name}") already names its checkpoint; pass potential=... only with '
                    'MLPotential("workbench")'
                )
            source = name
        self.name = name
        self.precision = _check_precision(precision)
        dtype = torch.float64 if self.precision == "double" else torch.float32
        self.model = load_potential(source, dtype)

    def addForces(
        self,
        topology: openmm.app.Topology,
        system: openmm.System,
        atoms: Iterable[int] | None = None,
        forceGroup: int = 0,
        /,
        **args,
    ) -> None:
        """Add the potential's ``PythonForce`` to ``system`` for all atoms, or for ``atoms`` only.

        The positional ``atoms`` comes from ``createMixedSystem``; ``createSystem(topology, atoms=[...])``
        arrives as a keyword (the parameters are positional-only so both spellings work).
        """
        import torch

        from simulation.openmm import create_force

        if "atoms" in args:
            if atoms is not None:
                raise ValueError("atoms given twice (positionally and as a keyword); pass it once")
            atoms = args.pop("atoms")
        precision = _check_precision(args.pop("precision", self.precision))
        unknown = sorted(set(args) - _EMBEDDING_OPTIONS)
        if unknown:
            raise ValueError(
                f"{self.name}: unknown createSystem option(s) {', '.join(unknown)}; supported: atoms, precision"
            )
        model = self.model.to(torch.float64 if precision == "double" else torch.float32)
        all_atoms = list(topology.atoms())
        if atoms is None:
            selected = all_atoms
            indices = None
        else:
            indices = [int(i) for i in atoms]
            if not indices:
                raise ValueError("atoms is empty: give the indices of the atoms the potential should act on")
            if len(set(indices)) != len(indices):
                raise ValueError("atoms lists an index more than once")
            bad = [i for i in indices if not 0 <= i < len(all_atoms)]
            if bad:
                raise ValueError(f"atoms {bad[:5]} are outside the Topology's {len(all_atoms)} atoms")
            selected = [all_atoms[i] for i in indices]
        missing = [a.index for a in selected if a.element is None]
        if missing:
            raise ValueError(
                f"Topology atoms {missing[:5]} have no element (virtual sites or unknown residues); the workbench "
                "potential needs an element for every atom it acts on — pass atoms= to leave them out"
            )
        numbers = [a.element.atomic_number for a in selected]
        periodic = topology.getPeriodicBoxVectors() is not None or system.usesPeriodicBoundaryConditions()
        force = create_force(model, numbers, periodic=periodic)
        force.setForceGroup(forceGroup)
        if indices is not None:
            force.setParticles(indices)
        system.addForce(force)

    def getMLLongRange(self) -> bool:
        """Interactions are local: nothing beyond the model's cutoff (5 Angstrom for the shipped models)."""
        return False


def _check_precision(precision: str) -> str:
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}")
    return precision
