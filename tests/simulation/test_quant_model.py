"""The quantized potential as a potential: conservative forces, invariances, and QAT that learns."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from simulation.datasets import LabelledSet
from simulation.quantize.conservation import path_work_mismatch
from simulation.quantize.fakequant import QuantSpec, quantize
from simulation.quantize.lee import random_rotations
from simulation.quantize.qat import QATSchedule, fit


def _calibration(ethanol, n: int = 4):
    numbers, positions = ethanol
    rng = np.random.default_rng(0)
    z = torch.as_tensor(numbers).long().repeat(n)
    x = torch.as_tensor(np.concatenate([positions + rng.normal(0, 0.1, positions.shape) for _ in range(n)]))
    return [(z, x.float(), torch.arange(n).repeat_interleave(len(numbers)))]


def _fq(small_model, ethanol, spec=None):
    return quantize(small_model, spec or QuantSpec(4, 8, "mddq"), _calibration(ethanol)).double()


def test_weight_quantized_forces_equal_finite_differences(small_model, ethanol):
    fq = _fq(small_model, ethanol)
    for q in [*fq.input_q.values(), *fq.vector_q.values()]:
        q.enabled = False  # the int4 weights alone: a smooth energy, so forces must be its exact gradient
    z, x = torch.as_tensor(ethanol[0]), torch.as_tensor(ethanol[1])
    _, forces = fq.energy_and_forces(z, x)
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (5, 2)]:
        xp, xm = x.clone(), x.clone()
        xp[atom, axis] += h
        xm[atom, axis] -= h
        fd = -(float(fq(z, xp)[0].detach()) - float(fq(z, xm)[0].detach())) / (2 * h)
        assert abs(fd - float(forces[atom, axis])) < 1e-6


def test_path_work_mismatch_separates_gradient_forces_from_curl():
    x0, direction = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    harmonic = lambda x: ((x * x).sum(), -2.0 * x)  # noqa: E731 - E = |x|^2, F = -dE/dx
    gap, change = path_work_mismatch(harmonic, x0, direction, 201)
    assert change == pytest.approx(1.0) and gap < 1e-4
    swirl = lambda x: ((x * x).sum(), -2.0 * x + torch.stack([-x[:, 1], x[:, 0], 0 * x[:, 2]], 1))  # noqa: E731
    gap, _ = path_work_mismatch(swirl, x0, direction, 201)
    assert gap == pytest.approx(1.0, abs=1e-4)  # the curl term does work 1 along this path


def test_w4a8_forces_integrate_to_the_quantized_energy_change(small_model, ethanol):
    """With 8-bit activations the energy is piecewise smooth (rounding steps); forces are autograd through the
    straight-through graph, so along a path their work matches the energy change up to those small steps."""
    fq = _fq(small_model, ethanol)
    z, x = torch.as_tensor(ethanol[0]), torch.as_tensor(ethanol[1])
    direction = torch.as_tensor(np.random.default_rng(3).normal(size=x.shape))
    direction *= 0.3 / direction.norm()
    gap, change = path_work_mismatch(lambda p: fq.energy_and_forces(z, p), x, direction, 121)
    assert gap < 0.25 * change + 1e-3


@pytest.mark.parametrize("scale", ["tensor", "row"])
def test_quantized_energy_is_rotation_and_permutation_invariant(small_model, ethanol, scale):
    fq = _fq(small_model, ethanol, QuantSpec(4, 8, "mddq", activation_scale=scale))
    z, x = torch.as_tensor(ethanol[0]), torch.as_tensor(ethanol[1])
    e0, f0 = fq.energy_and_forces(z, x)
    perm = torch.as_tensor(np.random.default_rng(1).permutation(len(z)))
    e1, f1 = fq.energy_and_forces(z[perm], x[perm])
    e0, e1 = e0.detach(), e1.detach()
    assert abs(float(e1[0] - e0[0])) < 1e-9
    assert torch.allclose(f1, f0[perm], atol=1e-9)
    for r in random_rotations(3, seed=2):
        er = fq.energy_and_forces(z, (x - x.mean(0)) @ r.T)[0].detach()
        # invariant up to the odd 8-bit rounding flip (a direction landing on a rounding boundary)
        assert abs(float(er[0] - e0[0])) < 5e-3 * (1.0 + abs(float(e0[0])))


def _toy_set(ethanol, n: int = 24) -> LabelledSet:
    numbers, positions = ethanol
    rng = np.random.default_rng(5)
    frames = np.stack([positions + rng.normal(0, 0.08, positions.shape) for _ in range(n)])
    # a harmonic "reference": energies and forces the model can learn
    disp = frames - positions
    energy = 0.5 * (disp**2).sum(axis=(1, 2))
    forces = -disp
    atoms = len(numbers)
    return LabelledSet(
        numbers=np.tile(numbers, n),
        positions=frames.reshape(-1, 3),
        forces=forces.reshape(-1, 3),
        energy=energy,
        n_atoms=np.full(n, atoms),
        molecule=np.zeros(n, dtype=np.int64),
        split=np.zeros(n, dtype=np.int64),
        temperature=np.full(n, 300.0),
        smiles=["CCO"],
    )


def test_qat_lowers_the_loss_on_a_tiny_model(small_model, ethanol):
    torch.manual_seed(0)
    data = _toy_set(ethanol)
    fq = quantize(small_model.float(), QuantSpec(4, 8, "mddq"), data)
    summary = fit(fq, data, max_steps=24, lr=3e-3, step_lr=1e-4, batch_size=8, schedule=QATSchedule(), log_every=6)
    assert summary["steps"] == 24
    assert summary["last_loss"] < summary["first_loss"]
    assert all(q.bits == 4 for q in fq.weight_q.values())  # the schedule ends at the target widths
    assert all(q.enabled for q in fq.quantizers("vector"))


@pytest.mark.parametrize("scale", ["tensor", "row"])
def test_activation_schedule_starts_fine_and_ends_at_the_target(small_model, ethanol, scale):
    fq = _fq(small_model, ethanol, QuantSpec(4, 8, "mddq", activation_scale=scale))
    schedule = QATSchedule(activation_start_bits=16, activation_target_at=0.9)
    x = torch.linspace(-1.0, 1.0, 1001, dtype=torch.float64)
    x = x[:, None] if scale == "tensor" else x[None, :]  # a row step sees the whole row
    q = next(iter(fq.input_q.values()))

    def worst(q):
        with torch.no_grad():
            return float((q(x) - x).abs().max())

    coarse = worst(q)
    state = schedule.apply(fq, 0.5)
    assert state["activation_bits"] == 16 and state["vector_bits"] == 16
    assert all(q.bits == 16 for q in fq.input_q.values())
    assert all(v.bits == 16 for v in fq.quantizers("vector"))
    assert worst(q) < coarse / 100  # same range, 256x finer grid
    state = schedule.apply(fq, 0.95)
    assert state["activation_bits"] == 8 and state["vector_bits"] == 8
    assert all(q.bits == 8 for q in [*fq.input_q.values(), *fq.quantizers("vector")])
    assert worst(q) == pytest.approx(coarse, rel=1e-9)  # back on the 8-bit grid
    assert QATSchedule().apply(fq, 0.0)["activation_bits"] == 8  # default: at the target throughout


def test_distilled_frames_take_the_teacher_labels_at_jittered_positions(small_model, ethanol):
    from simulation.quantize.qat import _distilled
    from simulation.train import batches

    teacher = copy.deepcopy(small_model).float()
    b = next(batches(_toy_set(ethanol), 8))
    noise = torch.Generator().manual_seed(0)
    positions, energy, forces = _distilled(teacher, b, torch.float32, 0.5, 0.05, noise)
    moved = (positions - b.positions).abs().amax(1) > 0  # (atoms,)
    frames = torch.zeros(b.n_graphs, dtype=torch.bool).index_put_((b.batch[moved],), torch.tensor(True))
    assert int(frames.sum()) == 4  # half of the 8 frames, every atom of a chosen frame displaced
    assert bool((moved == frames[b.batch]).all())
    t_energy, t_forces = teacher.energy_and_forces(b.numbers, positions, b.batch, n_graphs=b.n_graphs)
    torch.testing.assert_close(energy[frames], t_energy[frames].detach())
    torch.testing.assert_close(forces[moved], t_forces[moved].detach())
    torch.testing.assert_close(energy[~frames], b.energy[~frames].float())  # the rest keep the reference labels
    torch.testing.assert_close(forces[~moved], b.forces[~moved])


def test_distillation_brings_the_quantized_model_towards_its_teacher(small_model, ethanol):
    from simulation.train import batches

    torch.manual_seed(0)
    teacher = copy.deepcopy(small_model).float()
    data = _toy_set(ethanol)
    fq = quantize(teacher, QuantSpec(4, 8, "mddq"), data)
    b = next(batches(data, 16))

    def gap() -> float:
        _, f_t = teacher.energy_and_forces(b.numbers, b.positions, b.batch, n_graphs=b.n_graphs)
        _, f_s = fq.energy_and_forces(b.numbers, b.positions, b.batch, n_graphs=b.n_graphs)
        return float((f_s - f_t).abs().mean())

    before = gap()
    summary = fit(fq, data, max_steps=30, lr=3e-3, step_lr=1e-4, batch_size=8, teacher=teacher, distill_fraction=1.0)
    assert summary["steps"] == 30
    assert gap() < before
    assert all(not p.requires_grad for p in teacher.parameters())  # the teacher is not trained
