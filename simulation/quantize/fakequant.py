"""The fake-quantized potential used for calibration and quantization-aware training (QAT).

:class:`GAQPotential` wraps a float :class:`~simulation.model.EquivariantPotential` (whose parameters it trains)
and adds, for every linear layer, a per-output-channel weight quantizer and an 8-bit input quantizer (by
default a dynamic step per row, i.e. per atom or pair; ``activation_scale="tensor"``: one static, calibrated
step per tensor), and for the vector
features the quantizer of the chosen method (MDDQ for GAQ, per-component for the naive baseline). Forces
stay ``-dE/dx`` by autograd through the fake-quant graph (straight-through rounding).

>>> spec = QuantSpec(weight_bits=4, activation_bits=8, vector="mddq")
>>> float_model = EquivariantPotential.from_pretrained("simulation/checkpoints/ethanol")  # doctest: +SKIP
>>> fq = quantize(float_model, spec, train_frames)  # doctest: +SKIP
>>> energy, forces = fq.energy_and_forces(numbers, positions)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from simulation.model import EquivariantPotential, neighbour_list
from simulation.quantize.graph import QuantizedGraphInterface, linear_names, vector_keys
from simulation.quantize.mddq import (
    ACTIVATION_SCALES,
    VECTOR_METHODS,
    QuantizationError,
    RowQuantizer,
    ScalarQuantizer,
    check_bits,
    vector_quantizer,
)

__all__ = ["QuantSpec", "GAQPotential", "quantize"]


@dataclass
class QuantSpec:
    """What to quantize and how: weight / activation bit widths and the vector-feature method."""

    weight_bits: int = 4
    activation_bits: int = 8
    vector: str = "mddq"  # "mddq" (GAQ), "mddq-sphere", "naive" (per component) or "none" (float vectors)
    # Layers whose weights stay at 8 bits (mixed precision): a name matches when it equals or ends with an
    # entry after a dot, e.g. "embedding", "readout.3", "value_radial" (every message block's).
    int8_layers: tuple[str, ...] = ()
    # Scalar linear inputs: "row" (a dynamic step per row, i.e. per atom or per pair, from that row's largest
    # magnitude; the shipped recipe) or "tensor" (one static step per input, calibrated then learned)
    activation_scale: str = "row"

    def __post_init__(self) -> None:
        check_bits(self.weight_bits, "weight")
        check_bits(self.activation_bits, "activation")
        if self.activation_scale not in ACTIVATION_SCALES:
            raise QuantizationError(
                f"activation scale {self.activation_scale!r}", f"unknown; choose one of {', '.join(ACTIVATION_SCALES)}"
            )
        if self.vector not in VECTOR_METHODS:
            raise QuantizationError(
                f"vector method {self.vector!r}", f"unknown; choose one of {', '.join(VECTOR_METHODS)}"
            )
        self.int8_layers = tuple(self.int8_layers)
        known = {"embedding", *linear_names(16)}
        for entry in self.int8_layers:
            if not any(n == entry or n.endswith("." + entry) or n.startswith(entry + ".") for n in known):
                raise QuantizationError(
                    f"int8 layer {entry!r}",
                    "matches no layer; use names such as embedding, readout, readout.3, key_radial, value_radial",
                )

    def bits_for(self, name: str) -> int:
        """Weight bit width of layer ``name`` (``"embedding"`` or a linear layer name)."""
        for entry in self.int8_layers:
            if name == entry or name.endswith("." + entry) or name.startswith(entry + "."):
                return max(8, self.weight_bits)
        return self.weight_bits

    @property
    def name(self) -> str:
        return (
            f"W{self.weight_bits}A{self.activation_bits}"
            + ("-mixed" if self.int8_layers else "")
            + ("-row" if self.activation_scale == "row" else "")
        )


_VECTOR_INPUT = (".mix_u", ".mix_v")  # linear layers acting on vector channels


def _key(name: str) -> str:
    return name.replace(".", "_")


class GAQPotential(QuantizedGraphInterface, nn.Module):
    """Fake-quantized :class:`EquivariantPotential` (same ``energy_and_forces`` / ``predict`` interface)."""

    def __init__(self, model: EquivariantPotential, spec: QuantSpec):
        super().__init__()
        self.model = model
        self.config = model.config
        self.spec = spec
        self.register_buffer("element_index", model.element_index.clone(), persistent=False)
        modules = dict(model.named_modules())
        self._linears = {name: modules[name] for name in linear_names(self.config.layers)}
        self.weight_q = nn.ModuleDict(
            {
                _key(n): ScalarQuantizer(spec.bits_for(n), m.out_features, kind="weight")
                for n, m in self._linears.items()
            }
        )
        input_quantizer = RowQuantizer if spec.activation_scale == "row" else ScalarQuantizer
        self.input_q = nn.ModuleDict(
            {_key(n): input_quantizer(spec.activation_bits) for n in self._linears if not n.endswith(_VECTOR_INPUT)}
        )
        self.embed_q = ScalarQuantizer(spec.bits_for("embedding"), model.embedding.num_embeddings, kind="weight")
        self.vector_q = nn.ModuleDict(
            {
                _key(k): vector_quantizer(spec.vector, self.config.features, spec.activation_bits)
                for k in vector_keys(self.config.layers)
            }
        )
        self._record: dict[str, Tensor] | None = None
        self._quantizing = True

    # ------------------------------------------------------------------------ hooks used by graph.py
    def tensor(self, name: str) -> Tensor:
        obj: object = self.model
        for part in name.split("."):
            obj = getattr(obj, part) if not part.isdigit() else obj[int(part)]
        return obj  # type: ignore[return-value]

    def _observe(self, key: str, value: Tensor) -> None:
        peak = value.detach().abs()
        peak = peak.reshape(-1, peak.shape[-1]).amax(0) if peak.ndim > 1 else peak
        old = self._record.get(key)
        self._record[key] = peak if old is None else torch.maximum(old, peak)

    def weight(self, name: str) -> Tensor:
        """The fake-quantized weight ``(out, in)`` of linear layer ``name``."""
        w = self._linears[name].weight
        return self.weight_q[_key(name)](w.T).T if self._quantizing else w

    def linear(self, name: str, x: Tensor, vector: bool = False) -> Tensor:
        layer = self._linears[name]
        if self._record is not None and not vector:
            self._observe("in:" + name, x.reshape(-1, 1))
        if self._quantizing and not vector:
            x = self.input_q[_key(name)](x)
        return nn.functional.linear(x, self.weight(name), layer.bias)

    def vector(self, key: str, v: Tensor, frames: Tensor | None = None) -> Tensor:
        if self._record is not None:
            self._observe("vn:" + key, v.norm(dim=1))  # (atoms, F) norms per channel
            self._observe("vc:" + key, v.reshape(-1, v.shape[-1]))  # components per channel
        return self.vector_q[_key(key)](v, frames) if self._quantizing else v

    def embed(self, elem: Tensor) -> Tensor:
        w = self.model.embedding.weight  # (elements, F)
        if self._quantizing:
            w = self.embed_q(w.T).T
        return w[elem]

    # ------------------------------------------------------------------------ calibration
    @torch.no_grad()
    def calibrate(self, frames: Iterable[tuple[Tensor, Tensor, Tensor]]) -> int:
        """Set every quantizer's step from float activations on ``frames`` of ``(numbers, positions, batch)``.

        Weights get MSE-optimal per-channel steps; activations the largest magnitude seen. Returns the number
        of batches used; none raises :class:`QuantizationError`.
        """
        self._record, self._quantizing = {}, False
        count = 0
        try:
            for numbers, positions, batch in frames:
                n_graphs = int(batch.max()) + 1
                neighbours = neighbour_list(positions, self.config.cutoff, batch)
                self(numbers, positions.to(self.model.embedding.weight.dtype), batch, None, n_graphs, neighbours)
                count += 1
            record = self._record
        finally:
            self._record, self._quantizing = None, True
        if not count:
            raise QuantizationError(
                "calibration data",
                "no configurations given; pass training frames (e.g. LabelledSet.split_set('train')) to calibrate "
                "the 8-bit activation ranges",
            )
        for name, layer in self._linears.items():
            self.weight_q[_key(name)].calibrate(layer.weight.T, mse=True)
            if "in:" + name in record:  # vector inputs (mix_u, mix_v) are quantized by the vector quantizer
                self.input_q[_key(name)].calibrate(record["in:" + name])
        self.embed_q.calibrate(self.model.embedding.weight.T, mse=True)
        for key in vector_keys(self.config.layers):
            q = self.vector_q[_key(key)]
            if hasattr(q, "norm"):  # MDDQ: norms per channel
                q.norm.calibrate(record["vn:" + key][None, :])
            elif hasattr(q, "component"):
                q.component.calibrate(record["vc:" + key][None, :])
        return count

    def weight_names(self) -> list[str]:
        """Names of the linear layers with quantized weights (as in the float ``state_dict``)."""
        return list(self._linears)

    def quantizers(self, branch: str) -> list[nn.Module]:
        """The quantizers of ``branch``: ``"scalar"`` (weights, scalar inputs, embedding) or ``"vector"``."""
        if branch == "vector":
            return [q for q in self.vector_q.values() if hasattr(q, "set_bits")]
        return [*self.weight_q.values(), *self.input_q.values(), self.embed_q]


def _frames_from(calibration: object, batch_size: int, limit: int):
    """``(numbers, positions, batch)`` batches from a LabelledSet or an iterable of such triples."""
    from simulation.datasets import LabelledSet
    from simulation.train import batches

    if isinstance(calibration, LabelledSet):
        for k, b in enumerate(batches(calibration, batch_size)):
            if k >= limit:
                break
            yield b.numbers, b.positions, b.batch
    else:
        yield from calibration


def quantize(
    model: EquivariantPotential,
    spec: QuantSpec,
    calibration: object | None,
    *,
    batch_size: int = 32,
    max_batches: int = 8,
) -> GAQPotential:
    """A calibrated fake-quant copy of ``model`` (post-training quantization; :mod:`.qat` fine-tunes it).

    ``calibration`` is a :class:`~simulation.datasets.LabelledSet` of training configurations (or an iterable
    of ``(numbers, positions, batch)``); ``None`` or empty raises :class:`QuantizationError`.
    """
    if calibration is None:
        raise QuantizationError(
            "calibration data",
            "quantizing needs calibration configurations to set the activation ranges; pass training frames, "
            "e.g. LabelledSet.load('simulation/data/ethanol.npz').split_set('train')",
        )
    fq = GAQPotential(copy.deepcopy(model).float(), spec)
    fq.calibrate(_frames_from(calibration, batch_size, max_batches))
    return fq.eval()


def spec_dict(spec: QuantSpec) -> dict:
    """JSON-ready form of ``spec``."""
    return asdict(spec)
