"""Packed storage of quantized weights: two signed int4 per ``uint8`` (or one ``int8``) plus float32 scales.

A packed checkpoint folder holds ``config.json`` (the float :class:`~simulation.model.PotentialConfig` plus a
``quantization`` block), ``model.safetensors`` with, per linear layer ``<name>``:

* ``<name>.qweight`` — ``uint8 (out, ceil(in / 2))`` for 4 bits (low nibble = even column, value + 8) or
  ``int8 (out, in)`` for 8 bits;
* ``<name>.wscale`` — ``float32 (out,)`` per-output-channel step, so ``W = q * wscale[:, None]``;
* ``<name>.astep`` — ``float32 ()`` the calibrated step of the 8-bit input quantizer (scalar inputs only, and
  only with per-tensor activation steps: per-row steps are set from each row at run time);
* ``<name>.bias`` — float32, as in the float model;

the embedding likewise (``embedding.qweight`` / ``embedding.wscale``, one scale per element row), the vector
quantizer steps (``vector.<key>.step``), and the small float tensors (layer norms, temperatures, energy
shifts). The byte saving is real: it shows in the file size and in :func:`state_dict_bytes`.

>>> packed = pack_int4(torch.tensor([[-8, 7, 3]], dtype=torch.int8))
>>> unpack_int4(packed, 3).tolist()
[[-8, 7, 3]]
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from simulation.model import CONFIG_NAME, WEIGHTS_NAME, PotentialConfig, read_checkpoint
from simulation.quantize.fakequant import _VECTOR_INPUT, GAQPotential, QuantSpec, _key
from simulation.quantize.graph import linear_names, vector_keys
from workbench.errors import CheckpointError

__all__ = [
    "MODEL_TYPE",
    "pack_int4",
    "unpack_int4",
    "integer_weights",
    "packed_state",
    "save_packed",
    "load_packed",
    "spec_of",
    "state_dict_bytes",
]

MODEL_TYPE = "QuantizedPotential"
FORMAT_VERSION = 1


def pack_int4(q: Tensor) -> Tensor:
    """Signed int4 values ``q: (rows, cols)`` in ``[-8, 7]`` -> ``uint8 (rows, ceil(cols / 2))``."""
    if q.ndim != 2:
        raise ValueError(f"pack_int4 expects a 2-D tensor, got shape {tuple(q.shape)}")
    if q.numel() and (int(q.min()) < -8 or int(q.max()) > 7):
        raise ValueError("pack_int4: values must lie in [-8, 7]")
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    if u.shape[1] % 2:
        u = torch.cat([u, torch.full((u.shape[0], 1), 8, dtype=torch.uint8)], dim=1)
    return u[:, 0::2] | (u[:, 1::2] << 4)


def unpack_int4(packed: Tensor, cols: int) -> Tensor:
    """Inverse of :func:`pack_int4`: ``uint8 (rows, ceil(cols / 2))`` -> ``int8 (rows, cols)``."""
    low = (packed & 0x0F).to(torch.int8) - 8
    high = (packed >> 4).to(torch.int8) - 8
    return torch.stack([low, high], dim=2).reshape(packed.shape[0], -1)[:, :cols]


def integer_weights(w: Tensor, step: Tensor, bits: int) -> Tensor:
    """``clamp(round(w / step[:, None]))`` as ``int8 (out, in)`` (the grid values the fake-quant model uses)."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(w / step[:, None]), qmin, qmax).to(torch.int8)


def _pack_weight(w: Tensor, step: Tensor, bits: int) -> Tensor:
    q = integer_weights(w, step, bits)
    return pack_int4(q) if bits == 4 else q


@torch.no_grad()
def packed_state(fq: GAQPotential) -> dict[str, Tensor]:
    """The packed tensors of a calibrated / trained :class:`GAQPotential` (float32 CPU, contiguous)."""
    model, spec = fq.model, fq.spec
    state: dict[str, Tensor] = {}
    for name in linear_names(fq.config.layers):
        layer = fq._linears[name]
        step = fq.weight_q[_key(name)].step.detach().abs().clamp_min(1e-12).float()
        state[name + ".qweight"] = _pack_weight(layer.weight.detach().float(), step, spec.bits_for(name))
        state[name + ".wscale"] = step
        if layer.bias is not None:
            state[name + ".bias"] = layer.bias.detach().float()
        if not name.endswith(_VECTOR_INPUT) and spec.activation_scale == "tensor":
            state[name + ".astep"] = fq.input_q[_key(name)].step.detach().abs().clamp_min(1e-12).float().reshape(())
    step = fq.embed_q.step.detach().abs().clamp_min(1e-12).float()
    state["embedding.qweight"] = _pack_weight(model.embedding.weight.detach().float(), step, spec.bits_for("embedding"))
    state["embedding.wscale"] = step
    for key in vector_keys(fq.config.layers):
        q = fq.vector_q[_key(key)]
        inner = getattr(q, "norm", None) or getattr(q, "component", None)
        if inner is not None:
            state[f"vector.{key}.step"] = inner.step.detach().abs().clamp_min(1e-12).float()
    for layer in range(fq.config.layers):
        p = f"messages.{layer}."
        state[p + "norm.weight"] = fq.tensor(p + "norm.weight").detach().float()
        state[p + "norm.bias"] = fq.tensor(p + "norm.bias").detach().float()
        state[p + "temperature_raw"] = fq.tensor(p + "temperature_raw").detach().float()
    state["readout.0.weight"] = model.readout[0].weight.detach().float()
    state["readout.0.bias"] = model.readout[0].bias.detach().float()
    state["element_shift"] = model.element_shift.detach().float()
    state["energy_scale"] = model.energy_scale.detach().float()
    return {k: v.contiguous().cpu() for k, v in state.items()}


def state_dict_bytes(state: dict[str, Tensor]) -> int:
    """Bytes held by the tensors of ``state`` (``numel * element_size``)."""
    return sum(t.numel() * t.element_size() for t in state.values())


def save_packed(fq: GAQPotential, folder: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write the packed checkpoint (``config.json`` + ``model.safetensors``) of ``fq`` into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = packed_state(fq)
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "model_type": MODEL_TYPE})
    config = asdict(fq.config)
    config["quantization"] = {
        "model_type": MODEL_TYPE,
        "format_version": FORMAT_VERSION,
        "method": "GAQ" if fq.spec.vector.startswith("mddq") else fq.spec.vector,
        **asdict(fq.spec),
        "weight_granularity": "per output channel"
        + (f"; {', '.join(fq.spec.int8_layers)} at 8 bits" if fq.spec.int8_layers else ""),
        "activation_granularity": "per tensor (static, calibrated)"
        if fq.spec.activation_scale == "tensor"
        else "per row (dynamic: max |row| / 127 per atom or pair)",
        "packed_bytes": state_dict_bytes(state),
        **(extra or {}),
    }
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def expected_shapes(config: PotentialConfig, spec: QuantSpec) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a packed checkpoint for ``config`` (to check a file before loading it)."""
    from simulation.model import EquivariantPotential

    reference = EquivariantPotential(config)
    modules = dict(reference.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}
    for name in linear_names(config.layers):
        layer = modules[name]
        cols = layer.in_features
        shapes[name + ".qweight"] = (layer.out_features, (cols + 1) // 2 if spec.bits_for(name) == 4 else cols)
        shapes[name + ".wscale"] = (layer.out_features,)
        if layer.bias is not None:
            shapes[name + ".bias"] = (layer.out_features,)
        if not name.endswith(_VECTOR_INPUT) and spec.activation_scale == "tensor":
            shapes[name + ".astep"] = ()
    n_el, f = reference.embedding.weight.shape
    shapes["embedding.qweight"] = (n_el, (f + 1) // 2 if spec.bits_for("embedding") == 4 else f)
    shapes["embedding.wscale"] = (n_el,)
    if spec.vector != "none":
        for key in vector_keys(config.layers):
            shapes[f"vector.{key}.step"] = (config.features,)
    for layer in range(config.layers):
        p = f"messages.{layer}."
        shapes[p + "norm.weight"] = shapes[p + "norm.bias"] = (config.features,)
        shapes[p + "temperature_raw"] = (config.heads,)
    shapes["readout.0.weight"] = shapes["readout.0.bias"] = (config.features,)
    shapes["element_shift"] = (n_el,)
    shapes["energy_scale"] = ()
    return shapes


def check_state(state: dict[str, Tensor], config: PotentialConfig, spec: QuantSpec, path: object) -> None:
    """Raise :class:`CheckpointError` naming the first tensor whose presence or shape does not match ``config``."""
    expected = expected_shapes(config, spec)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            path,
            f"packed weights do not match the model (features={config.features}, layers={config.layers}, "
            f"heads={config.heads}): missing {missing[:5]}, unexpected {unexpected[:5]}",
        )
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise CheckpointError(
                path,
                f"shape mismatch for {name!r}: the file has {tuple(state[name].shape)}, a model with "
                f"features={config.features}, layers={config.layers}, heads={config.heads}, "
                f"elements={config.elements} expects {shape}",
            )


def _parse_packed_config(raw: dict, config_path: Path) -> tuple[PotentialConfig, dict]:
    if "quantization" not in raw:
        raise CheckpointError(config_path, "no 'quantization' block: not a packed quantized checkpoint")
    quant = raw.pop("quantization")
    if quant.get("model_type") != MODEL_TYPE:
        raise CheckpointError(
            config_path, f"not a packed quantized checkpoint (model_type {quant.get('model_type')!r})"
        )
    if int(quant.get("format_version", -1)) > FORMAT_VERSION:
        raise CheckpointError(config_path, f"format_version {quant.get('format_version')} is newer than this code")
    return PotentialConfig(**raw), quant


def load_packed(folder: str | os.PathLike) -> tuple[PotentialConfig, dict, dict[str, Tensor]]:
    """``(config, quantization block, tensors)`` of a packed checkpoint; problems raise :class:`CheckpointError`."""
    (config, quant), state = read_checkpoint(folder, "build it with `make quantize-potential`", _parse_packed_config)
    weights_path = Path(folder) / WEIGHTS_NAME
    check_state(state, config, spec_of(quant), weights_path)
    return config, quant, state


def spec_of(quant: dict) -> QuantSpec:
    """The :class:`QuantSpec` recorded in a packed checkpoint's ``quantization`` block."""
    return QuantSpec(
        int(quant["weight_bits"]),
        int(quant["activation_bits"]),
        str(quant["vector"]),
        tuple(quant.get("int8_layers", ())),
        str(quant.get("activation_scale", "tensor")),
    )
