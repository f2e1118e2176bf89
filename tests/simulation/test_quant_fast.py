"""The packed W4A8 model on the fast MD path: static graph equals the neighbour-list model, compiled equals
eager, and the float-activation mode gives the exact, conservative gradient of a smooth energy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from simulation.fast import FastPotential
from simulation.quantize.conservation import path_work_mismatch
from simulation.quantize.fakequant import QuantSpec, quantize
from simulation.quantize.mddq import QuantizationError
from simulation.quantize.pack import save_packed
from simulation.quantize.potential import QuantizedPotential


@pytest.fixture()
def folder(small_model, ethanol, tmp_path):
    numbers, positions = ethanol
    rng = np.random.default_rng(0)
    z = torch.as_tensor(numbers).long().repeat(4)
    x = torch.as_tensor(np.concatenate([positions + rng.normal(0, 0.1, positions.shape) for _ in range(4)]))
    calibration = [(z, x.float(), torch.arange(4).repeat_interleave(len(numbers)))]
    return save_packed(quantize(small_model, QuantSpec(4, 8, "mddq"), calibration), tmp_path / "w4a8")


def test_fast_path_equals_the_neighbour_list_model(folder, ethanol):
    numbers, positions = ethanol
    qp = QuantizedPotential.from_pretrained(folder, dtype=torch.float64, kernel="int8")
    x = torch.as_tensor(positions)
    e_ref, f_ref = qp.energy_and_forces(torch.as_tensor(numbers), x)
    fast = FastPotential(qp, numbers)
    assert fast.static and fast.quantized
    assert fast.model.kernel == "dequant" and qp.kernel == "int8"  # the caller's model is left as it was
    energy, forces = fast(x)
    assert abs(float(energy) - float(e_ref.detach()[0])) < 1e-9
    np.testing.assert_allclose(forces.numpy(), f_ref.detach().numpy(), atol=1e-9)


def test_float_activations_give_conservative_forces(folder, ethanol):
    numbers, positions = ethanol
    x0 = torch.as_tensor(positions)
    direction = torch.as_tensor(np.random.default_rng(1).normal(size=positions.shape))
    direction *= 0.3 / direction.norm()
    smooth = FastPotential(QuantizedPotential.from_pretrained(folder, torch.float64, activations="float"), numbers)
    w4a8 = FastPotential(QuantizedPotential.from_pretrained(folder, torch.float64), numbers)
    smooth_gap, smooth_change = path_work_mismatch(smooth, x0, direction, 241)
    rounded_gap, _ = path_work_mismatch(w4a8, x0, direction, 241)
    assert smooth_change > 1e-3
    assert smooth_gap < 1e-4 * smooth_change + 1e-7  # work of the forces = energy change (quadrature error only)
    assert rounded_gap > 10 * smooth_gap  # the 8-bit rounding steps are what breaks it


def test_unknown_activation_mode_lists_the_choices(folder):
    with pytest.raises(QuantizationError, match="int8, float"):
        QuantizedPotential.from_pretrained(folder, activations="int4")


def test_uncalibrated_quantizers_are_refused_before_compiling(folder, ethanol):
    qp = QuantizedPotential.from_pretrained(folder)
    for q in qp.vector_q.values():
        inner = getattr(q, "norm", None) or q.component
        inner.calibrated.fill_(False)
    with pytest.raises(QuantizationError, match="not calibrated"):
        FastPotential(qp, ethanol[0], compile=True)


@pytest.mark.slow
def test_compiled_quantized_path_equals_eager(folder, ethanol):
    numbers, positions = ethanol
    qp = QuantizedPotential.from_pretrained(folder, dtype=torch.float64)
    eager, compiled = FastPotential(qp, numbers), FastPotential(qp, numbers, compile=True)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a silent fallback to eager would prove nothing
        for _ in range(3):
            x = torch.as_tensor(positions + 0.05 * rng.standard_normal(positions.shape))
            e_eager, f_eager = eager(x)
            e_comp, f_comp = compiled(x)
            assert compiled.compiled
            assert abs(float(e_comp) - float(e_eager)) < 1e-6 * max(1.0, abs(float(e_eager)))
            np.testing.assert_allclose(f_comp.numpy(), f_eager.numpy(), atol=1e-6)


def test_smooth_twin_shares_the_packed_weights(folder, ethanol):
    numbers, positions = ethanol
    qp = QuantizedPotential.from_pretrained(folder, torch.float64)
    twin = qp.smooth_twin()
    assert twin is not qp and twin.activations == "float" and qp.activations == "int8"
    assert twin.smooth_twin() is twin
    assert all(a is b for a, b in zip(twin.parameters(), qp.parameters(), strict=True))  # shared, not copied
    reference = QuantizedPotential.from_pretrained(folder, torch.float64, activations="float")
    x = torch.as_tensor(positions)
    e_twin, f_twin = twin.energy_and_forces(torch.as_tensor(numbers), x)
    e_ref, f_ref = reference.energy_and_forces(torch.as_tensor(numbers), x)
    assert torch.equal(e_twin, e_ref) and torch.equal(f_twin, f_ref)
    with pytest.raises(QuantizationError, match="int8, float"):
        qp.with_activations("int4")


def test_md_minimises_a_quantized_model_on_its_smooth_twin(ethanol):
    """L-BFGS on the rounded W4A8 energy gives up early; minimising the smooth twin reaches the tolerance."""
    import openmm

    from simulation import md
    from simulation.openmm import create_system, load_potential

    numbers, positions = ethanol
    start = (numbers, positions + np.random.default_rng(2).normal(0, 0.05, positions.shape))
    qp = load_potential("ethanol-w4a8")  # the shipped, trained checkpoint
    smooth = qp.smooth_twin()

    def rms_force(x) -> float:  # kJ/mol/nm, OpenMM's units for the minimiser's tolerance
        _, forces = smooth.energy_and_forces(torch.as_tensor(numbers), torch.as_tensor(np.asarray(x)))
        return float(forces.pow(2).mean().sqrt()) * 96.485 * 10.0

    minimised = md.run(start, qp, steps=0).positions[0]
    assert rms_force(minimised) < 10.0  # OpenMM's default tolerance, on the RMS force
    assert np.linalg.norm(minimised[0] - minimised[1]) < 1.7  # still a molecule (C-C bond)

    system, _, x = create_system(start, qp)  # the same minimiser on the rounded energy directly
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    direct = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(openmm.unit.angstrom)
    assert rms_force(direct) > 2 * rms_force(minimised)
