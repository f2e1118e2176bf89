"""Fast energy + forces of one fixed molecule for molecular dynamics: a static all-pairs graph, optionally compiled.

During MD the atoms, their order and (for a small molecule) the set of interacting pairs never change, so the
per-step work of :meth:`EquivariantPotential.energy_and_forces` (a neighbour-list search, element look-ups,
validation, an autograd graph built op by op) is mostly overhead. :class:`FastPotential` removes it:

- **static all-pairs graph**: every ordered pair ``(i, j), i != j`` is an edge. The cosine cutoff envelope
  multiplies every message and attention weight, so pairs beyond the cutoff add exact zeros: energy and forces
  equal the neighbour-list result, no list is rebuilt per step, and the tensor shapes never change;
- **compiled**: with ``compile=True`` the function ``x -> (dE/dx, E)`` (``torch.func.grad_and_value``) is compiled
  by ``torch.compile`` (Inductor, C++ kernels) as one graph holding both the forward and the backward pass,
  so a step runs no Python autograd at all. Compilation takes a while (tens of seconds, minutes on a busy
  machine; Inductor caches its kernels on disk), so it pays off for long runs. If compilation fails the
  exact eager path is used instead, with a warning.

Periodic systems and molecules above ``max_all_pairs_atoms`` keep the neighbour-list path of the model.

>>> model = EquivariantPotential.from_pretrained("simulation/checkpoints/ethanol")  # doctest: +SKIP
>>> fast = FastPotential(model, numbers, compile=True)                            # doctest: +SKIP
>>> energy, forces = fast(torch.as_tensor(positions))  # eV, eV/Angstrom tensors   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from simulation.model import EquivariantPotential, neighbour_list
from simulation.quantize.graph import QuantizedGraphInterface, quantized_energy

if TYPE_CHECKING:
    from simulation.quantize.potential import QuantizedPotential

__all__ = ["FastPotential", "all_pairs", "MAX_ALL_PAIRS_ATOMS"]

# Above this size the n(n-1) static graph costs more than a neighbour list would save.
MAX_ALL_PAIRS_ATOMS = 128
_log = logging.getLogger(__name__)


def all_pairs(n_atoms: int) -> tuple[Tensor, Tensor]:
    """Every ordered pair ``(i, j)`` with ``i != j``, row-major (the order :func:`neighbour_list` uses)."""
    i, j = torch.meshgrid(torch.arange(n_atoms), torch.arange(n_atoms), indexing="ij")
    keep = i != j
    return i[keep], j[keep]


def _check_calibrated(model: torch.nn.Module, source: object) -> None:
    """Every activation quantizer of a quantized model has its step (checked once, not in the compiled step)."""
    from simulation.quantize.mddq import QuantizationError

    missing = [
        name for name, module in model.named_modules() if hasattr(module, "calibrated") and not module.calibrated
    ]
    if missing:
        raise QuantizationError(
            source, f"quantizers {', '.join(missing[:4])} are not calibrated; quantize with calibration data first"
        )


class FastPotential:
    """Energy (eV) and forces (eV/Angstrom) of a fixed set of atoms, for many calls at changing positions.

    ``numbers: (atoms,)`` are checked once against the model's elements (untrained ones raise
    :class:`~workbench.errors.UnsupportedElementError`). The weights are snapshotted (a private copy of the
    model, frozen), so the caller's model is left untouched.

    >>> fast = FastPotential(model, [6, 6, 8, 1, 1, 1, 1, 1, 1])  # doctest: +SKIP
    >>> energy, forces = fast(torch.as_tensor(positions))       # doctest: +SKIP
    """

    def __init__(
        self,
        model: EquivariantPotential | QuantizedPotential,
        numbers: Sequence[int] | np.ndarray | Tensor,
        *,
        compile: bool = False,
        periodic: bool = False,
        max_all_pairs_atoms: int = MAX_ALL_PAIRS_ATOMS,
        source: object = "structure",
    ):
        self.model = copy.deepcopy(model).eval()
        # A quantized model (packed W4A8 weights) runs its own quantized graph; its "dequant" kernel keeps the
        # unpacked weights cached, and is the one torch.func and torch.compile can trace.
        if not isinstance(self.model, EquivariantPotential | QuantizedGraphInterface):
            kind = type(model).__name__
            raise TypeError(f"FastPotential needs an EquivariantPotential or a quantized one, got {kind}")
        self.quantized = isinstance(self.model, QuantizedGraphInterface)
        if self.quantized:
            if getattr(self.model, "kernel", "dequant") != "dequant":
                self.model.kernel = "dequant"
            _check_calibrated(self.model, source)
            if hasattr(self.model, "unpack_weights"):  # the packed model (the fake-quant one has nothing cached)
                self.model.unpack_weights(next(self.model.parameters()).dtype)
        for p in self.model.parameters():
            p.requires_grad_(False)
        param = next(self.model.parameters())
        self.dtype, self.device = param.dtype, param.device
        self.numbers = torch.as_tensor(np.asarray(numbers), dtype=torch.long, device=self.device).reshape(-1)
        self.elem = self.model.element_indices(self.numbers, source)  # raises for untrained elements
        self.n_atoms = int(self.numbers.shape[0])
        self.batch = torch.zeros(self.n_atoms, dtype=torch.long, device=self.device)
        self.periodic = bool(periodic)
        self.static = not self.periodic and self.n_atoms <= max_all_pairs_atoms
        if self.static:
            i, j = all_pairs(self.n_atoms)
            self.i, self.j = i.to(self.device), j.to(self.device)
            self.images = torch.zeros(self.i.shape[0], 3, dtype=torch.long, device=self.device)
            if not self.quantized:
                with torch.no_grad():
                    self.shift = self.model.element_shift[self.elem]  # (atoms,) eV
        self._grad_and_value = torch.func.grad_and_value(self._energy)
        self.compiled = False
        self._compiled_fn = None
        if compile and self.static and self.n_atoms > 1:
            self._compiled_fn = torch.compile(self._grad_and_value, fullgraph=True, dynamic=False)
            self.compiled = True

    # ------------------------------------------------------------------------------------------ evaluation

    def _energy(self, x: Tensor, traced: bool = True) -> Tensor:
        """Total energy (eV, scalar) on the static graph; the same operations as ``EquivariantPotential``."""
        m = self.model
        if self.quantized:
            return quantized_energy(m, self.elem, x, self.batch, None, 1, (self.i, self.j, self.images))[0]
        vec = x[self.j] - x[self.i]  # (pairs, 3)
        d = vec.norm(dim=-1)  # (pairs,)
        unit = vec / d[:, None]  # (pairs, 3)
        rbf = m.radial(d)  # (pairs, K)
        fc = m.cutoff_fn(d)  # (pairs,), exactly 0 beyond the cutoff
        s = m.embedding(self.elem)  # s: (atoms, F)
        # v: (atoms, 3, F), exactly zero before the first layer. When traced it is marked as requiring grad so
        # that the message block takes its general branch without a data-dependent test (which would break the
        # compiled graph); adding the zero vector messages changes nothing.
        v = s.new_zeros((s.shape[0], 3, s.shape[1]), requires_grad=traced)
        for message, update in zip(m.messages, m.updates, strict=True):
            s, v = message(s, v, self.i, self.j, rbf, fc, unit)
            s, v = update(s, v)
        atomic = m.readout(s).squeeze(-1) * m.energy_scale + self.shift  # (atoms,)
        return atomic.sum()

    def _eager(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Plain autograd: cheaper per call than torch.func's wrappers when nothing is compiled.
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            energy = self._energy(x, traced=False)
            (grad,) = torch.autograd.grad(energy, x)
        return energy, -grad

    def __call__(self, positions: Tensor, cell: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(energy: () eV, forces: (atoms, 3) eV/Angstrom)`` at ``positions: (atoms, 3)`` Angstrom."""
        x = positions.to(self.dtype)
        if not self.static:
            neighbours = neighbour_list(x, self.model.config.cutoff, self.batch, cell)
            energy, forces = self.model.energy_and_forces(self.numbers, x, self.batch, cell, 1, neighbours=neighbours)
            return energy.detach()[0], forces.detach()
        if self._compiled_fn is not None:
            try:
                grad, energy = self._compiled_fn(x)
                return energy.detach(), -grad.detach()
            except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to the exact eager path
                warnings.warn(
                    f"torch.compile of the potential failed ({type(exc).__name__}: {exc}); "
                    "using the (exact, slower) eager path",
                    RuntimeWarning,
                    stacklevel=2,
                )
                _log.debug("compile failure", exc_info=True)
                self._compiled_fn = None
                self.compiled = False
        energy, forces = self._eager(x)
        return energy.detach(), forces.detach()

    def numpy(self, positions: np.ndarray) -> tuple[float, np.ndarray]:
        """Plain NumPy in and out: ``positions: (atoms, 3)`` Angstrom -> ``(energy eV, forces (atoms, 3) eV/A)``."""
        energy, forces = self(torch.as_tensor(np.asarray(positions), dtype=self.dtype, device=self.device))
        return float(energy), forces.cpu().numpy().astype(np.float64)
