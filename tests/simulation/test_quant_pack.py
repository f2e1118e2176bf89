"""Packed W4A8 storage, the packed inference model and its loading errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simulation.model import WEIGHTS_NAME
from simulation.quantize.fakequant import QuantSpec, quantize
from simulation.quantize.pack import load_packed, pack_int4, save_packed, state_dict_bytes, unpack_int4
from simulation.quantize.potential import KERNELS, QuantizedPotential
from workbench.errors import CheckpointError


def _calibration(ethanol, n: int = 4):
    numbers, positions = ethanol
    rng = np.random.default_rng(0)
    z = torch.as_tensor(numbers).long().repeat(n)
    x = torch.as_tensor(np.concatenate([positions + rng.normal(0, 0.1, positions.shape) for _ in range(n)]))
    return [(z, x.float(), torch.arange(n).repeat_interleave(len(numbers)))]


@pytest.fixture()
def packed(small_model, ethanol, tmp_path):
    fq = quantize(small_model, QuantSpec(4, 8, "mddq"), _calibration(ethanol))
    folder = save_packed(fq, tmp_path / "w4a8")
    return fq, folder


@pytest.mark.parametrize("cols", [1, 7, 16, 33])
def test_int4_pack_unpack_round_trip_is_exact(cols):
    q = torch.randint(-8, 8, (5, cols), dtype=torch.int8)
    p = pack_int4(q)
    assert p.dtype == torch.uint8 and p.shape == (5, (cols + 1) // 2)
    assert torch.equal(unpack_int4(p, cols), q)
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(torch.tensor([[9]], dtype=torch.int8))


def test_packed_bytes_are_an_eighth_of_float_weights_plus_scales(packed, small_model, tmp_path):
    fq, folder = packed
    _, quant, state = load_packed(folder)
    weights = {k: v for k, v in state.items() if k.endswith(".qweight")}
    scales = {k: v for k, v in state.items() if k.endswith(".wscale")}
    float_linear_bytes = sum(4 * fq.weight(k[: -len(".qweight")]).numel() for k in weights if k != "embedding.qweight")
    float_linear_bytes += 4 * small_model.embedding.weight.numel()
    packed_bytes = state_dict_bytes(weights)
    assert packed_bytes <= float_linear_bytes / 8 * 1.1  # odd column counts pad one nibble per row at most
    assert state_dict_bytes(scales) == 4 * sum(v.shape[0] for v in scales.values())
    small_model.save_pretrained(tmp_path / "float")
    float_file = (tmp_path / "float" / WEIGHTS_NAME).stat().st_size
    assert (folder / WEIGHTS_NAME).stat().st_size < float_file / 2  # tiny model: headers and biases weigh more
    assert quant["packed_bytes"] == state_dict_bytes(state)


def test_quantized_potential_equals_the_fake_quant_model(packed, ethanol):
    fq, folder = packed
    numbers, positions = ethanol
    z, x = torch.as_tensor(numbers), torch.as_tensor(positions, dtype=torch.float32)
    e_ref, f_ref = fq.energy_and_forces(z, x)
    for kernel in KERNELS:
        qp = QuantizedPotential.from_pretrained(folder, kernel=kernel)
        e, f = qp.energy_and_forces(z, x)
        assert torch.allclose(e, e_ref, atol=1e-5), kernel
        assert torch.allclose(f, f_ref, atol=1e-4), kernel
    qp = QuantizedPotential.from_pretrained(folder, dtype=torch.float64)
    energy, forces = qp.predict(numbers, positions)
    assert np.isfinite(energy) and forces.shape == (len(numbers), 3)
    qp32 = QuantizedPotential.from_pretrained(folder)
    assert state_dict_bytes(dict(qp32.state_dict())) < state_dict_bytes(dict(fq.model.state_dict())) / 2


def test_load_potential_resolves_packed_folders(packed):
    from simulation.openmm import _ALIASES, load_potential

    _, folder = packed
    assert isinstance(load_potential(folder), QuantizedPotential)
    assert _ALIASES["workbench-organic-w4a8"] == "organic-w4a8"


def test_packed_checkpoint_into_another_shape_names_the_mismatch(packed, tmp_path):
    _, folder = packed
    config = json.loads((folder / "config.json").read_text())
    config["features"] = 32
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"shape mismatch for '.*': the file has .* expects"):
        QuantizedPotential.from_pretrained(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw["features"] = 16
    raw["layers"] = 3
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="missing"):
        QuantizedPotential.from_pretrained(folder)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"elements": [1]}))
    (plain / WEIGHTS_NAME).write_bytes(b"")
    with pytest.raises(CheckpointError, match="quantization"):
        QuantizedPotential.from_pretrained(plain)


def test_shipped_w4a8_names_load_and_predict(ethanol):
    from simulation.openmm import CHECKPOINTS, load_potential

    for name in ("workbench-organic-w4a8", "workbench-ethanol-w4a8", "workbench-aspirin-w4a8"):
        model = load_potential(name)
        assert isinstance(model, QuantizedPotential) and model.spec.weight_bits == 4
    folder = CHECKPOINTS / "ethanol-w4a8"
    assert (folder / WEIGHTS_NAME).stat().st_size * 4 < (CHECKPOINTS / "ethanol" / WEIGHTS_NAME).stat().st_size
    energy, forces = load_potential("workbench-ethanol-w4a8").predict(*ethanol)
    assert np.isfinite(energy) and np.isfinite(forces).all()


def test_row_scaled_activations_pack_without_steps_and_match_the_fake_quant_model(small_model, ethanol, tmp_path):
    spec = QuantSpec(4, 8, "mddq", activation_scale="row")
    fq = quantize(small_model, spec, _calibration(ethanol))
    folder = save_packed(fq, tmp_path / "row")
    _, quant, state = load_packed(folder)
    assert quant["activation_scale"] == "row" and "per row" in quant["activation_granularity"]
    assert not any(k.endswith(".astep") for k in state)  # nothing static to store: steps come from each row
    numbers, positions = ethanol
    rng = np.random.default_rng(4)
    frames = 3  # enough pairs for the int8 kernel path
    z = torch.as_tensor(numbers).long().repeat(frames)
    x = torch.as_tensor(np.concatenate([positions + rng.normal(0, 0.05, positions.shape) for _ in range(frames)]))
    batch = torch.arange(frames).repeat_interleave(len(numbers))
    e_ref, f_ref = fq.energy_and_forces(z, x.float(), batch, n_graphs=frames)
    for kernel in KERNELS:
        qp = QuantizedPotential.from_pretrained(folder, kernel=kernel)
        assert qp.spec.activation_scale == "row"
        e, f = qp.energy_and_forces(z, x.float(), batch, n_graphs=frames)
        assert torch.allclose(e, e_ref, atol=1e-5), kernel
        assert torch.allclose(f, f_ref, atol=1e-4), kernel
    tensor_spec = QuantSpec(4, 8, "mddq", activation_scale="tensor")
    tensor_folder = save_packed(quantize(small_model, tensor_spec, _calibration(ethanol)), tmp_path / "t")
    per_tensor = QuantizedPotential.from_pretrained(tensor_folder)
    e_tensor, _ = per_tensor.energy_and_forces(z, x.float(), batch, n_graphs=frames)
    assert not torch.allclose(e_tensor, e_ref, atol=1e-6)  # the two modes really round differently


def test_mixed_precision_keeps_the_named_layers_at_8_bits(small_model, ethanol, tmp_path):
    from simulation.quantize.mddq import QuantizationError
    from simulation.quantize.qat import QATSchedule

    spec = QuantSpec(4, 8, "mddq", ("embedding", "readout", "value_radial"))
    fq = quantize(small_model, spec, _calibration(ethanol))
    QATSchedule().apply(fq, 1.0)
    assert fq.weight_q["messages_0_value_radial"].bits == 8 and fq.weight_q["messages_0_query"].bits == 4
    assert fq.embed_q.bits == 8
    folder = save_packed(fq, tmp_path / "mixed")
    state = load_packed(folder)[2]
    assert state["messages.0.value_radial.qweight"].dtype == torch.int8
    assert state["readout.3.qweight"].dtype == torch.int8 and state["embedding.qweight"].dtype == torch.int8
    assert state["messages.0.query.qweight"].dtype == torch.uint8  # two int4 per byte
    qp = QuantizedPotential.from_pretrained(folder)
    assert qp.spec.int8_layers == spec.int8_layers
    z, x = torch.as_tensor(ethanol[0]), torch.as_tensor(ethanol[1], dtype=torch.float32)
    e_ref, f_ref = fq.energy_and_forces(z, x)
    e, f = qp.energy_and_forces(z, x)
    assert torch.allclose(e, e_ref, atol=1e-5) and torch.allclose(f, f_ref, atol=1e-4)
    plain = save_packed(quantize(small_model, QuantSpec(4, 8, "mddq"), _calibration(ethanol)), tmp_path / "w4")
    w4 = state_dict_bytes(dict(QuantizedPotential.from_pretrained(plain).state_dict()))
    assert w4 < state_dict_bytes(dict(qp.state_dict())) < state_dict_bytes(dict(fq.model.state_dict())) / 2
    with pytest.raises(QuantizationError, match="matches no layer"):
        QuantSpec(4, 8, "mddq", ("readuot",))
