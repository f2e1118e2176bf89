"""An E(3)-equivariant attention potential: PaiNN-style scalar/vector message passing with neighbour attention.

Every atom carries scalar channels ``s: (atoms, F)`` and vector channels ``v: (atoms, F, 3)`` (held
channels-last, ``(atoms, 3, F)``, inside the layers for speed; :meth:`EquivariantPotential.features` returns
the ``(atoms, F, 3)`` view). A layer

1. **attends** over its neighbours: per head ``h`` the logit is a cosine similarity with a learned, bounded
   temperature, ``l_ij = tau_h * <q_i, k_j> / (|q_i| |k_j|)`` with ``tau_h`` in ``(0, TAU_MAX)``, so logits
   always lie in ``[-TAU_MAX, TAU_MAX]`` (robust to quantization). The weights are a cutoff-weighted softmax
   rescaled to the soft neighbour count, ``w_ij = N_i * fc_ij exp(l_ij) / sum_k fc_ik exp(l_ik)`` with
   ``N_i = sum_k fc_ik``: uniform logits give back PaiNN's plain sum, and every term goes smoothly to zero
   at the cutoff, so the energy surface stays smooth when neighbours come and go;
2. **passes messages** ``ds_ij, dv_ij`` built from ``phi(s_j) * W(rbf(r_ij))`` (invariant) times ``v_j`` or the
   unit vector ``r_ij / |r_ij|`` (equivariant), weighted by ``w_ij``;
3. **updates** each atom by mixing its vector channels linearly and gating them with scalars (PaiNN update).

The energy is a sum of atomic energies, ``E = sum_i (scale * MLP(s_i) + shift[Z_i])``, with per-element shifts
from a linear least-squares fit to the training energies; forces are ``-dE/dx`` by autograd, so they are
conservative by construction. Periodic systems pass a ``cell`` (rows are lattice vectors); the neighbour
list then includes every periodic image within the cutoff.

>>> model = EquivariantPotential(PotentialConfig(elements=[1, 6, 8]))
>>> energy, forces = model.predict([8, 1, 1], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from simulation.reference import element_symbol
from workbench.errors import CheckpointError, InvalidMoleculeError, UnsupportedElementError

__all__ = [
    "PotentialConfig",
    "EquivariantPotential",
    "neighbour_list",
    "fit_element_shifts",
    "TAU_MAX",
]

T = TypeVar("T")
FORMAT_VERSION = 1
TAU_MAX = 8.0
ATTENTION_KINDS = ("cosine", "dot")
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MIN_DISTANCE_ANGSTROM = 0.5


@dataclass
class PotentialConfig:
    """Hyper-parameters of :class:`EquivariantPotential` (saved as ``config.json``)."""

    elements: list[int]  # atomic numbers the model was trained on
    features: int = 64  # F: scalar and vector channels per atom
    layers: int = 3
    heads: int = 4
    cutoff: float = 5.0  # Angstrom
    radial_basis: int = 16
    attention: str = "cosine"  # "cosine" (bounded, learned temperature) or "dot" (plain scaled q.k, for ablations)
    model_type: str = "EquivariantPotential"
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)  # free-form provenance (data set, training run)

    def __post_init__(self) -> None:
        self.elements = sorted({int(z) for z in self.elements})
        if self.features % self.heads:
            raise ValueError(f"features ({self.features}) must be divisible by heads ({self.heads})")
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {self.attention!r}")


# ---------------------------------------------------------------------------------------------- geometry


def neighbour_list(
    positions: Tensor, cutoff: float, batch: Tensor | None = None, cell: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Directed pairs ``(i, j, images)`` with ``|x_j + images @ cell - x_i| < cutoff`` (no gradient).

    ``positions: (atoms, 3)``; ``batch: (atoms,)`` graph index (pairs never cross graphs); ``cell: (3, 3)``
    or ``(graphs, 3, 3)`` with lattice vectors as rows, or ``None`` for open boundaries. ``images: (pairs, 3)``
    are integer lattice translations of atom ``j`` (all zero without a cell). Every periodic image within
    the cutoff is found, so cells smaller than twice the cutoff work too.
    """
    with torch.no_grad():
        x = positions.detach()
        n = x.shape[0]
        if batch is None:
            batch = torch.zeros(n, dtype=torch.long, device=x.device)
        if cell is None:
            d = torch.cdist(x, x)
            mask = (d < cutoff) & (batch[:, None] == batch[None, :])
            mask.fill_diagonal_(False)
            i, j = mask.nonzero(as_tuple=True)
            return i, j, torch.zeros(i.shape[0], 3, dtype=torch.long, device=x.device)
        cells = cell.detach().reshape(-1, 3, 3).to(x.dtype)
        n_graphs = int(batch.max().item()) + 1 if n else 0
        if cells.shape[0] == 1 and n_graphs > 1:
            cells = cells.expand(n_graphs, 3, 3)
        out_i, out_j, out_s = [], [], []
        for g in range(n_graphs):
            idx = (batch == g).nonzero(as_tuple=True)[0]
            c = cells[g]
            volume = torch.det(c).abs()
            if volume < 1e-6:
                raise InvalidMoleculeError("cell", "the periodic cell is singular (zero volume)")
            # Wrap into the cell; remember the integer wrap so that images refer to the unwrapped positions.
            frac = x[idx] @ torch.linalg.inv(c)
            wrap = torch.floor(frac)
            xw = (frac - wrap) @ c
            widths = volume / torch.linalg.cross(c[[1, 2, 0]], c[[2, 0, 1]]).norm(dim=1)
            reps = [int(math.ceil(cutoff / float(w))) for w in widths]
            grid = torch.stack(
                torch.meshgrid(*[torch.arange(-r, r + 1, device=x.device) for r in reps], indexing="ij"), -1
            ).reshape(-1, 3)
            offsets = grid.to(x.dtype) @ c  # (S, 3)
            vec = xw[None, None, :, :] + offsets[:, None, None, :] - xw[None, :, None, :]  # (S, i, j, 3)
            d = vec.norm(dim=-1)
            mask = d < cutoff
            zero = int(((grid == 0).all(dim=1)).nonzero()[0])
            mask[zero].fill_diagonal_(False)
            s, a, b = mask.nonzero(as_tuple=True)
            images = grid[s] - wrap[b].long() + wrap[a].long()
            out_i.append(idx[a])
            out_j.append(idx[b])
            out_s.append(images)
        if not out_i:
            empty = torch.zeros(0, dtype=torch.long, device=x.device)
            return empty, empty, torch.zeros(0, 3, dtype=torch.long, device=x.device)
        return torch.cat(out_i), torch.cat(out_j), torch.cat(out_s)


def _edge_vectors(
    positions: Tensor, i: Tensor, j: Tensor, images: Tensor, batch: Tensor, cell: Tensor | None
) -> Tensor:
    """``r_ij = x_j + images @ cell - x_i`` with gradient to the positions: ``(pairs, 3)``."""
    vec = positions[j] - positions[i]
    if cell is not None:
        cells = cell.reshape(-1, 3, 3).to(positions.dtype)
        c = cells[batch[i]] if cells.shape[0] > 1 else cells[0].expand(i.shape[0], 3, 3)
        vec = vec + torch.einsum("ek,ekx->ex", images.to(positions.dtype), c)
    return vec


class CosineCutoff(nn.Module):
    """``fc(d) = (cos(pi d / rc) + 1) / 2`` inside the cutoff, 0 outside; value and slope vanish at ``rc``."""

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = cutoff

    def forward(self, d: Tensor) -> Tensor:
        return 0.5 * (torch.cos(d * (math.pi / self.cutoff)) + 1.0) * (d < self.cutoff).to(d.dtype)


class BesselBasis(nn.Module):
    """Radial basis ``sqrt(2/rc) sin(n pi d / rc) / d`` for ``n = 1..K``: ``(pairs,) -> (pairs, K)``."""

    def __init__(self, cutoff: float, size: int):
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer("frequencies", torch.arange(1, size + 1, dtype=torch.float32) * math.pi / cutoff)

    def forward(self, d: Tensor) -> Tensor:
        return math.sqrt(2.0 / self.cutoff) * torch.sin(d[:, None] * self.frequencies) / d[:, None]


def _scatter_sum(values: Tensor, index: Tensor, size: int) -> Tensor:
    out = values.new_zeros((size,) + values.shape[1:])
    return out.index_add_(0, index, values)


# ---------------------------------------------------------------------------------------------- layers


class NeighbourAttentionMessage(nn.Module):
    """Equivariant message block with bounded (cosine, learned-temperature) neighbour attention."""

    def __init__(self, features: int, heads: int, radial_basis: int, attention: str = "cosine"):
        super().__init__()
        self.features = features
        self.heads = heads
        self.kind = attention  # "cosine" (bounded logits) or "dot" (unnormalised scaled q.k, ablation only)
        self.norm = nn.LayerNorm(features)
        self.query = nn.Linear(features, features, bias=False)
        self.key = nn.Linear(features, features, bias=False)
        self.key_radial = nn.Linear(radial_basis, features)
        self.value = nn.Sequential(nn.Linear(features, features), nn.SiLU(), nn.Linear(features, 3 * features))
        self.value_radial = nn.Linear(radial_basis, 3 * features)
        # tau = TAU_MAX * sigmoid(raw); raw = -1.1 starts at tau ~ 2.0.
        self.temperature_raw = nn.Parameter(torch.full((heads,), -1.1))

    def temperature(self) -> Tensor:
        """Per-head attention temperature ``tau: (heads,)``, always in ``(0, TAU_MAX)``."""
        return TAU_MAX * torch.sigmoid(self.temperature_raw)

    def attention(self, h: Tensor, i: Tensor, j: Tensor, rbf: Tensor, fc: Tensor) -> Tensor:
        """Count-preserving attention weights ``w: (pairs, heads)``."""
        n_atoms, n_pairs, heads = h.shape[0], i.shape[0], self.heads
        q = self.query(h)[i].view(n_pairs, heads, self.features // heads)  # (pairs, H, F/H)
        k = (self.key(h)[j] * self.key_radial(rbf)).view(n_pairs, heads, self.features // heads)  # (pairs, H, F/H)
        if self.kind == "dot":
            return dot_attention_weights(q, k, i, fc, n_atoms)
        cos = (q * k).sum(-1) / torch.sqrt((q * q).sum(-1) * (k * k).sum(-1) + 1e-12)  # (pairs, H) in [-1, 1]
        tau = self.temperature()
        logits = tau * cos  # (pairs, H) in [-tau, tau]
        weight = fc[:, None] * torch.exp(logits - tau)  # (pairs, H) in (0, fc], no overflow possible
        denominator = _scatter_sum(weight, i, n_atoms)  # (atoms, H)
        count = _scatter_sum(fc, i, n_atoms)  # (atoms,) soft neighbour count
        return weight * (count[:, None] / (denominator + 1e-9))[i]

    def forward(
        self, s: Tensor, v: Tensor, i: Tensor, j: Tensor, rbf: Tensor, fc: Tensor, unit: Tensor
    ) -> tuple[Tensor, Tensor]:
        # s: (atoms, F); v: (atoms, 3, F) channels-last layout; rbf: (pairs, K); fc: (pairs,); unit: (pairs, 3)
        n_atoms, n_pairs, features = s.shape[0], i.shape[0], self.features
        h = self.norm(s)
        w = self.attention(h, i, j, rbf, fc)  # (pairs, H)
        x = self.value(h)[j] * self.value_radial(rbf)  # (pairs, 3F)
        x = (x.view(n_pairs, 3, self.heads, features // self.heads) * w[:, None, :, None]).reshape(n_pairs, 3, features)
        ds, dvv, dvs = x.unbind(1)  # each (pairs, F)
        dv = unit[:, :, None] * dvs[:, None, :]  # (pairs, 3, F)
        if v.requires_grad or bool(v.any()):  # v is exactly zero before the first layer
            dv = dv + dvv[:, None, :] * v[j]
        return s + _scatter_sum(ds, i, n_atoms), v + _scatter_sum(dv, i, n_atoms)


def dot_attention_weights(q: Tensor, k: Tensor, i: Tensor, fc: Tensor, n_atoms: int) -> Tensor:
    """Count-preserving weights ``(pairs, H)`` from unbounded logits ``<q_ij, k_ij> / sqrt(F/H)`` (ablation).

    The per-atom maximum logit (no gradient) is subtracted before ``exp``; it cancels in the normalisation.
    """
    logits = (q * k).sum(-1) / math.sqrt(q.shape[-1])  # (pairs, H), unbounded
    peak = logits.detach().new_full((n_atoms, logits.shape[1]), -math.inf)
    peak = peak.scatter_reduce(0, i[:, None].expand_as(logits), logits.detach(), "amax")
    weight = fc[:, None] * torch.exp(logits - peak[i])  # (pairs, H) in (0, fc]
    denominator = _scatter_sum(weight, i, n_atoms)  # (atoms, H)
    count = _scatter_sum(fc, i, n_atoms)  # (atoms,)
    return weight * (count[:, None] / (denominator + 1e-9))[i]


class EquivariantUpdate(nn.Module):
    """PaiNN update: linear mixing of vector channels, gated by scalars; norms and dot products feed back."""

    def __init__(self, features: int):
        super().__init__()
        self.features = features
        self.mix_u = nn.Linear(features, features, bias=False)
        self.mix_v = nn.Linear(features, features, bias=False)
        self.gate = nn.Sequential(nn.Linear(2 * features, features), nn.SiLU(), nn.Linear(features, 3 * features))

    def forward(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        # s: (atoms, F); v: (atoms, 3, F) channels-last layout
        uv = self.mix_u(v)  # (atoms, 3, F)
        vv = self.mix_v(v)  # (atoms, 3, F)
        vnorm = torch.sqrt((vv * vv).sum(1) + 1e-8)  # (atoms, F) invariant
        a_vv, a_sv, a_ss = self.gate(torch.cat([s, vnorm], dim=-1)).chunk(3, dim=-1)  # each (atoms, F)
        s = s + a_sv * (uv * vv).sum(1) + a_ss
        v = v + a_vv[:, None, :] * uv
        return s, v


# ---------------------------------------------------------------------------------------------- model


class EquivariantPotential(nn.Module):
    """Equivariant attention potential: energies (eV) and conservative forces (eV/Angstrom).

    >>> model = EquivariantPotential(PotentialConfig(elements=[1, 6, 8], features=32, layers=2))
    >>> z = torch.tensor([8, 1, 1]); x = torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    >>> energy, forces = model.energy_and_forces(z, x)
    """

    def __init__(self, config: PotentialConfig):
        super().__init__()
        self.config = config
        features = config.features
        n_elements = len(config.elements)
        table = torch.full((119,), -1, dtype=torch.long)
        table[torch.tensor(config.elements, dtype=torch.long)] = torch.arange(n_elements)
        self.register_buffer("element_index", table, persistent=False)
        self.embedding = nn.Embedding(n_elements, features)
        self.radial = BesselBasis(config.cutoff, config.radial_basis)
        self.cutoff_fn = CosineCutoff(config.cutoff)
        self.messages = nn.ModuleList(
            NeighbourAttentionMessage(features, config.heads, config.radial_basis, config.attention)
            for _ in range(config.layers)
        )
        self.updates = nn.ModuleList(EquivariantUpdate(features) for _ in range(config.layers))
        self.readout = nn.Sequential(
            nn.LayerNorm(features), nn.Linear(features, features // 2), nn.SiLU(), nn.Linear(features // 2, 1)
        )
        # Energy = scale * readout + shift[element]; set from training data by fit_element_shifts.
        self.register_buffer("element_shift", torch.zeros(n_elements, dtype=torch.float32))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float32))

    @property
    def elements(self) -> list[int]:
        """Atomic numbers the model was trained on."""
        return list(self.config.elements)

    def element_indices(self, numbers: Tensor, source: object = "structure") -> Tensor:
        """Map atomic numbers to embedding rows; untrained elements raise :class:`UnsupportedElementError`."""
        numbers = numbers.long()
        valid = (numbers > 0) & (numbers < 119)
        index = torch.where(valid, self.element_index[numbers.clamp(0, 118)], torch.full_like(numbers, -1))
        if bool((index < 0).any()):
            bad = {element_symbol(int(z)) for z in numbers[index < 0].unique().tolist()}
            raise UnsupportedElementError(source, bad, [element_symbol(z) for z in self.config.elements])
        return index

    def forward(
        self,
        numbers: Tensor,
        positions: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        n_graphs: int | None = None,
        neighbours: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Energies ``(graphs,)`` in eV for atoms ``numbers: (atoms,)`` at ``positions: (atoms, 3)`` Angstrom.

        ``batch: (atoms,)`` assigns atoms to graphs (default: one graph); ``cell`` adds periodic boundaries;
        ``neighbours`` may pass a precomputed :func:`neighbour_list`.
        """
        elem = self.element_indices(numbers)
        if batch is None:
            batch = torch.zeros(numbers.shape[0], dtype=torch.long, device=numbers.device)
        if n_graphs is None:
            n_graphs = int(batch.max().item()) + 1 if batch.numel() else 1
        s, _ = self._features(elem, positions, batch, cell, neighbours)
        atomic = self.readout(s).squeeze(-1) * self.energy_scale + self.element_shift[elem]  # (atoms,)
        return _scatter_sum(atomic, batch, n_graphs)

    def features(
        self, numbers: Tensor, positions: Tensor, batch: Tensor | None = None, cell: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Final-layer features: scalars ``s: (atoms, F)`` and vectors ``v: (atoms, F, 3)``.

        Internally the layers keep ``v`` channels-last, ``(atoms, 3, F)``, which makes the broadcasts over the
        three Cartesian components several times faster on CPU; the returned ``v`` is a transposed view.
        """
        elem = self.element_indices(numbers)
        if batch is None:
            batch = torch.zeros(numbers.shape[0], dtype=torch.long, device=numbers.device)
        s, v = self._features(elem, positions, batch, cell, None)
        return s, v.transpose(1, 2)

    def _features(
        self,
        elem: Tensor,
        positions: Tensor,
        batch: Tensor,
        cell: Tensor | None,
        neighbours: tuple[Tensor, Tensor, Tensor] | None,
    ) -> tuple[Tensor, Tensor]:
        i, j, images = (
            neighbours if neighbours is not None else neighbour_list(positions, self.config.cutoff, batch, cell)
        )
        vec = _edge_vectors(positions, i, j, images, batch, cell)  # (pairs, 3)
        d = vec.norm(dim=-1)  # (pairs,)
        unit = vec / d[:, None]  # (pairs, 3)
        rbf = self.radial(d)  # (pairs, K)
        fc = self.cutoff_fn(d)  # (pairs,)
        s = self.embedding(elem)  # s: (atoms, F)
        v = s.new_zeros((s.shape[0], 3, s.shape[1]))  # v: (atoms, 3, F), i.e. (atoms, F, 3) channels-last
        for message, update in zip(self.messages, self.updates, strict=True):
            s, v = message(s, v, i, j, rbf, fc, unit)
            s, v = update(s, v)
        return s, v

    def energy_and_forces(
        self,
        numbers: Tensor,
        positions: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        n_graphs: int | None = None,
        create_graph: bool = False,
        neighbours: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(energy: (graphs,), forces: (atoms, 3))``; forces are ``-dE/dx`` (``create_graph`` for training)."""
        if not positions.requires_grad:
            positions = positions.detach().requires_grad_(True)
        with torch.enable_grad():
            energy = self(numbers, positions, batch, cell, n_graphs, neighbours)
            (grad,) = torch.autograd.grad(energy.sum(), positions, create_graph=create_graph)
        return energy, -grad

    def predict(
        self,
        numbers: Sequence[int] | np.ndarray,
        positions: Sequence[Sequence[float]] | np.ndarray,
        cell: Sequence[Sequence[float]] | np.ndarray | None = None,
        source: object = "structure",
    ) -> tuple[float, np.ndarray]:
        """Checked single-structure evaluation: ``(energy in eV, forces (atoms, 3) in eV/Angstrom)``.

        Raises :class:`InvalidMoleculeError` for NaN positions or atoms closer than 0.5 Angstrom (periodic
        images included) and :class:`UnsupportedElementError` for elements the model was not trained on.
        """
        param = next(self.parameters())
        z = torch.as_tensor(np.asarray(numbers), dtype=torch.long, device=param.device).reshape(-1)
        x = torch.as_tensor(np.asarray(positions, dtype=np.float64), dtype=param.dtype, device=param.device)
        if x.ndim != 2 or x.shape != (z.shape[0], 3):
            raise InvalidMoleculeError(source, f"positions must have shape ({z.shape[0]}, 3), got {tuple(x.shape)}")
        bad = (~torch.isfinite(x).all(dim=1)).nonzero().flatten()
        if bad.numel():
            raise InvalidMoleculeError(
                source,
                f"non-finite (NaN or inf) positions for atom(s) {bad[:10].tolist()}",
                hint="embed the molecule in 3D first, e.g. with RDKit ETKDG",
            )
        self.element_indices(z, source)
        c = None if cell is None else torch.as_tensor(np.asarray(cell, dtype=np.float64), dtype=param.dtype)
        batch = torch.zeros(z.shape[0], dtype=torch.long, device=param.device)
        neighbours = neighbour_list(x, self.config.cutoff, batch, c)
        if neighbours[0].numel():
            d = _edge_vectors(x, *neighbours, batch, c).norm(dim=-1)
            k = int(torch.argmin(d))
            if float(d[k]) < MIN_DISTANCE_ANGSTROM:
                a, b = sorted((int(neighbours[0][k]), int(neighbours[1][k])))
                raise InvalidMoleculeError(
                    source,
                    f"atoms {a} and {b} overlap ({float(d[k]):.3f} A apart, minimum 0.5 A)",
                    hint="check the coordinates' units (Angstrom expected)",
                )
        energy, forces = self.energy_and_forces(z, x, batch, c, 1, neighbours=neighbours)
        return float(energy.detach()[0]), forces.detach().cpu().numpy().astype(np.float64)

    # ------------------------------------------------------------------------------------- persistence

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (float32) into ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            k: t.detach().to("cpu", torch.float32 if t.is_floating_point() else t.dtype).contiguous()
            for k, t in self.state_dict().items()
        }
        save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "model_type": self.config.model_type})
        (folder / CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> EquivariantPotential:
        """Load a model saved by :meth:`save_pretrained`; problems raise :class:`CheckpointError` naming the path.

        >>> model = EquivariantPotential.from_pretrained("simulation/checkpoints/ethanol")  # doctest: +SKIP
        """
        config, state = read_checkpoint(folder, "train one with `make train-potential-<name>`", _parse_config)
        weights_path = Path(folder) / WEIGHTS_NAME
        model = cls(config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(weights_path, f"weights do not match config.json: {exc}") from exc
        for name, tensor in state.items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise CheckpointError(weights_path, f"tensor {name!r} holds NaN or inf values")
        return model.to(dtype).eval()


def _parse_config(raw: dict, config_path: Path) -> PotentialConfig:
    if raw.get("model_type") != "EquivariantPotential":
        raise CheckpointError(config_path, f"model_type is {raw.get('model_type')!r}, not 'EquivariantPotential'")
    if int(raw.get("format_version", -1)) > FORMAT_VERSION:
        raise CheckpointError(config_path, f"format_version {raw.get('format_version')} is newer than this code")
    return PotentialConfig(**raw)


def read_checkpoint(
    folder: str | os.PathLike, missing_hint: str, parse: Callable[[dict, Path], T]
) -> tuple[T, dict[str, Tensor]]:
    """``(parse(config.json as a dict, its path), safetensors tensors)`` of a checkpoint folder.

    A missing file (the message ends with ``missing_hint``), a config that is not a JSON object or a corrupt
    weights file raise :class:`CheckpointError` naming the path. ``parse`` checks the config (before the
    weights are read); a ``ValueError``, ``TypeError`` or ``KeyError`` from it becomes a ``CheckpointError``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(path, f"file not found; {missing_hint}")
    try:
        raw = json.loads(config_path.read_text())
        if not isinstance(raw, dict):
            raise TypeError(f"expected a JSON object, got {type(raw).__name__}")
        parsed = parse(raw, config_path)
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise CheckpointError(config_path, f"unreadable config: {exc}") from exc
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(weights_path, f"corrupt weights file: {exc}") from exc
    return parsed, state


def fit_element_shifts(
    numbers: np.ndarray, n_atoms: np.ndarray, energy: np.ndarray, elements: Sequence[int]
) -> np.ndarray:
    """Per-element energies (eV) from a linear least-squares fit ``E ~ sum_Z count_Z * shift_Z``.

    ``numbers`` are concatenated per frame (``n_atoms`` each). With a single composition the fit is
    rank-deficient and ``lstsq`` returns the minimum-norm solution, which still reproduces the mean energy.
    """
    elements = list(elements)
    column = {z: k for k, z in enumerate(elements)}
    counts = np.zeros((len(n_atoms), len(elements)))
    frame = np.repeat(np.arange(len(n_atoms)), n_atoms)
    np.add.at(counts, (frame, np.array([column[int(z)] for z in numbers])), 1.0)
    shifts, *_ = np.linalg.lstsq(counts, energy, rcond=None)
    return shifts
