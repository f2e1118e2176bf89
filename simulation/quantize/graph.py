"""The quantized forward pass of :class:`~simulation.model.EquivariantPotential`, shared by the fake-quant
training model (:class:`~simulation.quantize.fakequant.GAQPotential`) and the packed inference model
(:class:`~simulation.quantize.potential.QuantizedPotential`), so both compute exactly the same function.

The computation is the float model's (see :mod:`simulation.model`), with three hooks a network provides:

* ``net.linear(name, x, vector=False)`` — a linear layer named as in the float ``state_dict`` (e.g.
  ``"messages.0.query"``) with quantized weights; scalar inputs are activation-quantized first, vector inputs
  ``(atoms, 3, F)`` arrive already quantized by ``net.vector``;
* ``net.vector(key, v, frames)`` — the vector-feature quantizer at ``key`` (``"messages.L"`` / ``"updates.L"``),
  given the atoms' local frames (:func:`local_frames`);
* ``net.embed(elem)`` — rows of the (quantized) element embedding;

plus plain float tensors ``net.tensor(name)`` (layer norms, temperatures, energy shifts). Shapes follow the
float model: ``s: (atoms, F)``, ``v: (atoms, 3, F)`` channels-last.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf
from torch import Tensor

from simulation.model import (
    TAU_MAX,
    EquivariantPotential,
    _edge_vectors,
    _scatter_sum,
    dot_attention_weights,
    neighbour_list,
)

__all__ = ["linear_names", "vector_keys", "local_frames", "quantized_energy"]


def linear_names(layers: int) -> list[str]:
    """Names of every linear layer of a float model with ``layers`` message/update blocks."""
    names = []
    for layer in range(layers):
        m, u = f"messages.{layer}.", f"updates.{layer}."
        names += [m + n for n in ("query", "key", "key_radial", "value.0", "value.2", "value_radial")]
        names += [u + n for n in ("mix_u", "mix_v", "gate.0", "gate.2")]
    return names + ["readout.1", "readout.3"]


def vector_keys(layers: int) -> list[str]:
    """Where vector features are quantized: the input of every message (but the first, where v = 0) and update."""
    return [f"messages.{layer}" for layer in range(1, layers)] + [f"updates.{layer}" for layer in range(layers)]


def _first_pair(key: Tensor, i: Tensor, n_atoms: int) -> Tensor:
    """Per atom, the index of its pair with the smallest ``key`` (``-1`` for atoms without pairs)."""
    best = key.new_full((n_atoms,), math.inf).scatter_reduce(0, i, key, "amin")
    index = torch.arange(key.shape[0], device=key.device)
    candidate = torch.where(key == best[i], index, torch.full_like(index, key.shape[0]))
    first = torch.full((n_atoms,), key.shape[0], dtype=torch.long, device=key.device)
    first = first.scatter_reduce(0, i, candidate, "amin")
    return torch.where(first < key.shape[0], first, torch.full_like(first, -1))


def local_frames(unit: Tensor, d: Tensor, i: Tensor, n_atoms: int) -> Tensor:
    """Right-handed orthonormal frames ``(atoms, 3, 3)`` (rows = axes) that rotate with the molecule.

    Axis 1 points to the nearest neighbour; axis 2 is the part of the direction to the nearest neighbour at
    least ~17 degrees off axis 1 that is orthogonal to it; axis 3 is their cross product. Atoms with fewer than
    two such neighbours get the identity (no rotation covariance for them). No gradient: the frames only
    place the rounding grid of the vector quantizer.
    """
    with torch.no_grad():
        frames = torch.eye(3, dtype=unit.dtype, device=unit.device).repeat(n_atoms, 1, 1)
        if i.numel() == 0:
            return frames
        p1 = _first_pair(d, i, n_atoms)
        has1 = p1 >= 0
        e1 = unit[p1.clamp_min(0)]  # (atoms, 3)
        sin = torch.linalg.cross(unit, e1[i]).norm(dim=-1)
        p2 = _first_pair(d + 1e4 * (sin < 0.3).to(d.dtype), i, n_atoms)
        e2 = unit[p2.clamp_min(0)]
        ok = has1 & (p2 >= 0) & (torch.linalg.cross(e2, e1).norm(dim=-1) >= 0.3)
        e2 = e2 - (e2 * e1).sum(-1, keepdim=True) * e1
        e2 = e2 / e2.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        e3 = torch.linalg.cross(e1, e2)
        built = torch.stack([e1, e2, e3], dim=1)
        return torch.where(ok[:, None, None], built, frames)


def _layer_norm(net, name: str, x: Tensor) -> Tensor:
    return nnf.layer_norm(x, x.shape[-1:], net.tensor(name + ".weight"), net.tensor(name + ".bias"))


def _message(
    net, layer: int, s: Tensor, v: Tensor, i: Tensor, j: Tensor, rbf: Tensor, fc: Tensor, unit: Tensor, frames: Tensor
):
    cfg = net.config
    p = f"messages.{layer}"
    n_atoms, n_pairs, features, heads = s.shape[0], i.shape[0], cfg.features, cfg.heads
    h = _layer_norm(net, p + ".norm", s)  # (atoms, F)
    q = net.linear(p + ".query", h)[i].view(n_pairs, heads, features // heads)
    k = (net.linear(p + ".key", h)[j] * net.linear(p + ".key_radial", rbf)).view(n_pairs, heads, features // heads)
    if cfg.attention == "dot":
        w = dot_attention_weights(q, k, i, fc, n_atoms)
    else:
        cos = (q * k).sum(-1) / torch.sqrt((q * q).sum(-1) * (k * k).sum(-1) + 1e-12)  # (pairs, H)
        tau = TAU_MAX * torch.sigmoid(net.tensor(p + ".temperature_raw"))
        weight = fc[:, None] * torch.exp(tau * cos - tau)
        denominator = _scatter_sum(weight, i, n_atoms)
        count = _scatter_sum(fc, i, n_atoms)
        w = weight * (count[:, None] / (denominator + 1e-9))[i]  # (pairs, H)
    hidden = nnf.silu(net.linear(p + ".value.0", h))
    x = net.linear(p + ".value.2", hidden)[j] * net.linear(p + ".value_radial", rbf)  # (pairs, 3F)
    x = (x.view(n_pairs, 3, heads, features // heads) * w[:, None, :, None]).reshape(n_pairs, 3, features)
    ds, dvv, dvs = x.unbind(1)
    dv = unit[:, :, None] * dvs[:, None, :]  # (pairs, 3, F)
    if layer > 0:  # v is exactly zero before the first layer
        dv = dv + dvv[:, None, :] * net.vector(p, v, frames)[j]
    return s + _scatter_sum(ds, i, n_atoms), v + _scatter_sum(dv, i, n_atoms)


def _update(net, layer: int, s: Tensor, v: Tensor, frames: Tensor):
    p = f"updates.{layer}"
    vq = net.vector(p, v, frames)  # (atoms, 3, F)
    uv = net.linear(p + ".mix_u", vq, vector=True)
    vv = net.linear(p + ".mix_v", vq, vector=True)
    vnorm = torch.sqrt((vv * vv).sum(1) + 1e-8)
    hidden = nnf.silu(net.linear(p + ".gate.0", torch.cat([s, vnorm], dim=-1)))
    a_vv, a_sv, a_ss = net.linear(p + ".gate.2", hidden).chunk(3, dim=-1)
    return s + a_sv * (uv * vv).sum(1) + a_ss, v + a_vv[:, None, :] * uv


def quantized_energy(
    net,
    elem: Tensor,
    positions: Tensor,
    batch: Tensor,
    cell: Tensor | None,
    n_graphs: int,
    neighbours: tuple[Tensor, Tensor, Tensor] | None,
) -> Tensor:
    """Energies ``(graphs,)`` in eV of atoms with embedding rows ``elem: (atoms,)`` at ``positions``."""
    cfg = net.config
    i, j, images = neighbours if neighbours is not None else neighbour_list(positions, cfg.cutoff, batch, cell)
    vec = _edge_vectors(positions, i, j, images, batch, cell)
    d = vec.norm(dim=-1)
    unit = vec / d[:, None]
    frequencies = torch.arange(1, cfg.radial_basis + 1, dtype=d.dtype, device=d.device) * (math.pi / cfg.cutoff)
    rbf = math.sqrt(2.0 / cfg.cutoff) * torch.sin(d[:, None] * frequencies) / d[:, None]  # (pairs, K)
    fc = 0.5 * (torch.cos(d * (math.pi / cfg.cutoff)) + 1.0) * (d < cfg.cutoff).to(d.dtype)
    s = net.embed(elem)
    v = s.new_zeros((s.shape[0], 3, s.shape[1]))
    frames = local_frames(unit, d, i, s.shape[0])
    for layer in range(cfg.layers):
        s, v = _message(net, layer, s, v, i, j, rbf, fc, unit, frames)
        s, v = _update(net, layer, s, v, frames)
    h = nnf.silu(net.linear("readout.1", _layer_norm(net, "readout.0", s)))
    atomic = net.linear("readout.3", h).squeeze(-1) * net.tensor("energy_scale") + net.tensor("element_shift")[elem]
    return _scatter_sum(atomic, batch, n_graphs)


class QuantizedGraphInterface:
    """The :class:`~simulation.model.EquivariantPotential` interface on top of :func:`quantized_energy`.

    Mixed into the fake-quant model (training, calibration) and the packed inference model, so both answer
    ``forward``, ``energy_and_forces``, ``predict`` and ``elements`` exactly as the float model does.
    """

    element_indices = EquivariantPotential.element_indices
    energy_and_forces = EquivariantPotential.energy_and_forces
    predict = EquivariantPotential.predict

    @property
    def elements(self) -> list[int]:
        """Atomic numbers the model was trained on."""
        return list(self.config.elements)

    def forward(
        self,
        numbers: Tensor,
        positions: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        n_graphs: int | None = None,
        neighbours: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Energies ``(graphs,)`` in eV (see :meth:`EquivariantPotential.forward`)."""
        elem = self.element_indices(numbers)
        if batch is None:
            batch = torch.zeros(numbers.shape[0], dtype=torch.long, device=numbers.device)
        if n_graphs is None:
            n_graphs = int(batch.max().item()) + 1 if batch.numel() else 1
        return quantized_energy(self, elem, positions, batch, cell, n_graphs, neighbours)
