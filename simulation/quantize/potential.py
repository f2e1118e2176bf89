"""The quantized potential for inference: runs from the packed int4/int8 weights of a W4A8 checkpoint.

It has the interface of :class:`~simulation.model.EquivariantPotential` (``energy_and_forces``, ``predict``,
``element_indices``, ``config``, ``elements``), so the OpenMM ``PythonForce``, the ASE calculator and the
openmm-ml names take it unchanged; :func:`simulation.openmm.load_potential` returns one for
``"workbench-<name>-w4a8"``. It computes exactly the function of the fake-quant model it was exported from
(the same :mod:`~simulation.quantize.graph`), with forces by autograd (straight-through rounding).

Three kernels for the linear layers (``kernel=``), measured in ``benchmarks/quantization.py``:

* ``"dequant"`` (default, the fastest here): unpack the int4 weights once per dtype to float and use the float
  matmul; activations are rounded to their 8-bit grid on the fly.
* ``"ondemand"``: unpack and rescale the weights on every call (smallest resident memory).
* ``"int8"``: ``torch._int_mm`` on the int8 activation codes and int weights, rescaled after the int32
  accumulation (scalar-input layers; backward through the dequantized weights).

>>> model = QuantizedPotential.from_pretrained("simulation/checkpoints/ethanol-w4a8")  # doctest: +SKIP
>>> energy, forces = model.predict(numbers, positions)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from simulation.model import EquivariantPotential, PotentialConfig
from simulation.quantize.fakequant import QuantSpec, _key
from simulation.quantize.graph import QuantizedGraphInterface, linear_names, vector_keys
from simulation.quantize.mddq import QuantizationError, fake_quant, row_step, vector_quantizer
from simulation.quantize.pack import check_state, load_packed, spec_of, unpack_int4

__all__ = ["QuantizedPotential", "KERNELS", "ACTIVATIONS"]

KERNELS = ("dequant", "ondemand", "int8")
ACTIVATIONS = ("int8", "float")


def _check_activations(activations: str) -> None:
    if activations not in ACTIVATIONS:
        raise QuantizationError(f"activations {activations!r}", f"unknown; choose one of {', '.join(ACTIVATIONS)}")


def _buffer_name(name: str) -> str:
    return name.replace(".", "__")


class _IntLinear(torch.autograd.Function):
    """``y = (x_q @ W_q^T) * (a_step * w_scale) + b`` with int8 x int8 -> int32 ``torch._int_mm``."""

    @staticmethod
    def forward(ctx, x, x_codes, w_codes_t, scale, weight, bias):  # noqa: D102
        y = torch._int_mm(x_codes, w_codes_t).to(x.dtype) * scale
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(weight)
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (weight,) = ctx.saved_tensors
        return grad @ weight, None, None, None, None, None


class QuantizedPotential(QuantizedGraphInterface, nn.Module):
    """Equivariant potential evaluated from packed W4A8 (or W8A8) weights; energies in eV, forces in eV/Angstrom."""

    def __init__(self, config: PotentialConfig, spec: QuantSpec, kernel: str = "dequant", activations: str = "int8"):
        super().__init__()
        if kernel not in KERNELS:
            raise QuantizationError(f"kernel {kernel!r}", f"unknown; choose one of {', '.join(KERNELS)}")
        _check_activations(activations)
        self.config, self.spec, self.kernel, self.activations = config, spec, kernel, activations
        table = torch.full((119,), -1, dtype=torch.long)
        table[torch.tensor(config.elements, dtype=torch.long)] = torch.arange(len(config.elements))
        self.register_buffer("element_index", table, persistent=False)
        self.vector_q = nn.ModuleDict(
            {
                _key(k): vector_quantizer(spec.vector, config.features, spec.activation_bits)
                for k in vector_keys(config.layers)
            }
        )
        self._names: dict[str, str] = {}
        self._cache: dict[tuple, Tensor] = {}
        self._in_features = {}

    # ------------------------------------------------------------------------ loading
    def load_packed_state(self, state: dict[str, Tensor], source: object = "packed state") -> None:
        """Take the tensors of a packed checkpoint (shapes checked; mismatch -> :class:`CheckpointError`)."""
        check_state(state, self.config, self.spec, source)
        ref = EquivariantPotential(self.config)
        modules = dict(ref.named_modules())
        for name in linear_names(self.config.layers):
            self._in_features[name] = modules[name].in_features
        self._in_features["embedding"] = self.config.features
        for name, tensor in state.items():
            if name.startswith("vector."):
                key = name[len("vector.") : -len(".step")]
                q = self.vector_q[_key(key)]
                inner = getattr(q, "norm", None) or getattr(q, "component", None)
                with torch.no_grad():
                    inner.step.copy_(tensor)
                    inner.step.requires_grad_(False)
                    inner.calibrated.fill_(True)
                continue
            buffer = _buffer_name(name)
            self._names[name] = buffer
            if tensor.is_floating_point() and not name.endswith((".wscale", ".astep")):
                self.register_parameter(buffer, nn.Parameter(tensor.clone(), requires_grad=False))
            else:
                self.register_buffer(buffer, tensor.clone())
        self._cache.clear()
        self.eval()

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        dtype: torch.dtype = torch.float32,
        kernel: str = "dequant",
        activations: str = "int8",
    ) -> QuantizedPotential:
        """Load a packed checkpoint folder written by :func:`~simulation.quantize.pack.save_packed`.

        ``activations="float"`` keeps the packed low-bit weights but skips the activation and vector-feature
        rounding: the energy is then a smooth function of the positions and the forces its exact gradient,
        which is what energy-conserving (NVE) dynamics needs. The default ``"int8"`` is the quantized
        function itself; its rounding steps make the straight-through forces slightly non-conservative.
        """
        config, quant, state = load_packed(folder)
        model = cls(config, spec_of(quant), kernel, activations)
        model.load_packed_state(state, Path(folder))
        model.quantization = quant
        return model.to(dtype).eval()

    def with_activations(self, activations: str) -> QuantizedPotential:
        """A twin sharing these packed weights (no copy) with another activation mode (``"int8"``/``"float"``)."""
        _check_activations(activations)
        twin = copy.copy(self)  # shallow: parameters, buffers and the dequantized-weight cache are shared
        twin.activations = activations
        return twin

    def smooth_twin(self) -> QuantizedPotential:
        """This model with float activations when it rounds them: a smooth energy whose forces are its exact
        gradient (what a local minimiser needs); ``self`` when it is smooth already."""
        return self if self.activations == "float" else self.with_activations("float")

    def _apply(self, fn, recurse=True):  # dtype/device moves invalidate the dequantized-weight cache
        self._cache = {}
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------------ hooks used by graph.py
    def tensor(self, name: str) -> Tensor:
        return getattr(self, self._names[name])

    def _dequant(self, name: str, dtype: torch.dtype) -> Tensor:
        codes = self._codes(name)
        return codes.to(dtype) * self.tensor(name + ".wscale").to(dtype)[:, None]

    def _codes(self, name: str) -> Tensor:
        packed = self.tensor(name + ".qweight")
        return unpack_int4(packed, self._in_features[name]) if self.spec.bits_for(name) == 4 else packed

    def weight(self, name: str, dtype: torch.dtype) -> Tensor:
        """The dequantized weight ``(out, in)`` of ``name`` (cached per dtype unless ``kernel="ondemand"``)."""
        if self.kernel == "ondemand":
            return self._dequant(name, dtype)
        key = (name, dtype)
        if key not in self._cache:
            self._cache[key] = self._dequant(name, dtype)
        return self._cache[key]

    def unpack_weights(self, dtype: torch.dtype | None = None) -> None:
        """Fill the dequantized-weight cache now (``kernel="dequant"``), outside any autograd transform.

        :class:`~simulation.fast.FastPotential` calls it before tracing, so the cached weights are plain tensors
        rather than tensors captured inside ``torch.func``/``torch.compile``.
        """
        dtype = dtype or self.tensor("element_shift").dtype
        if self.kernel == "ondemand":
            return
        with torch.no_grad():
            for name in [*self._in_features]:
                self.weight(name, dtype)

    def rounds_activations(self, site: str) -> bool:
        """Whether the input at ``site`` (a linear layer's name, or ``"vector:<key>"`` for a vector-feature
        quantizer) is rounded: everywhere with ``activations="int8"``, nowhere with ``"float"``."""
        return self.activations != "float"

    def linear(self, name: str, x: Tensor, vector: bool = False) -> Tensor:
        bias = self._names.get(name + ".bias")
        bias = getattr(self, bias) if bias is not None else None
        if vector or not self.rounds_activations(name):
            return nnf.linear(x, self.weight(name, x.dtype), bias)
        qmin, qmax = -(2 ** (self.spec.activation_bits - 1)), 2 ** (self.spec.activation_bits - 1) - 1
        if self.spec.activation_scale == "row":  # dynamic: one step per row (atom or pair)
            step = row_step(x, self.spec.activation_bits)
        else:
            step = self.tensor(name + ".astep").to(x.dtype)
        weight = self.weight(name, x.dtype)
        if self.kernel == "int8" and self.spec.activation_bits == 8 and x.ndim == 2 and x.shape[0] > 16:
            out = weight.shape[0]
            if x.shape[1] % 8 == 0 and out % 8 == 0:
                key = (name, "codes_t")
                if key not in self._cache:
                    self._cache[key] = self._codes(name).t().contiguous()
                codes = torch.clamp(torch.round(x.detach() / step), qmin, qmax).to(torch.int8)
                x_ste = fake_quant(x, step, qmin, qmax)  # carries the straight-through gradient
                scale = step * self.tensor(name + ".wscale").to(x.dtype)
                return _IntLinear.apply(x_ste, codes, self._cache[key], scale, weight, bias)
        return nnf.linear(fake_quant(x, step, qmin, qmax), weight, bias)

    def vector(self, key: str, v: Tensor, frames: Tensor | None = None) -> Tensor:
        if not self.rounds_activations("vector:" + key):
            return v
        return self.vector_q[_key(key)](v, frames)

    def embed(self, elem: Tensor) -> Tensor:
        dtype = self.tensor("element_shift").dtype
        return self.weight("embedding", dtype)[elem]
