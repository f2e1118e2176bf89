"""MDDQ vs naive vector quantization: norms, directions, rotation equivariance, and the bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simulation.quantize.fakequant import QuantSpec, quantize
from simulation.quantize.lee import local_equivariance_error, random_rotations
from simulation.quantize.mddq import MDDQ, NaiveVectorQuantizer, QuantizationError, ScalarQuantizer, fibonacci_sphere


def _vectors(n: int = 200, f: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-2, 0, f, dtype=torch.float64)  # channels with very different magnitudes
    return (
        torch.randn(n, 3, f, generator=g, dtype=torch.float64)
        * scale
        * torch.rand(n, 1, 1, generator=g, dtype=torch.float64)
    )


def test_mddq_keeps_unit_directions_and_quantized_norms():
    v = _vectors()
    q = MDDQ(8, bits=8).double()
    q.calibrate(v)
    out = q(v)
    r = torch.sqrt((v * v).sum(1) + 1e-12)
    r_hat = q.norm(r)
    assert torch.allclose(out.norm(dim=1), r_hat, atol=1e-9)  # |v_hat| is exactly the quantized norm
    u_hat = q.quantize_direction(v / r[:, None, :])
    assert torch.allclose(u_hat.norm(dim=1), torch.ones_like(r), atol=1e-9)
    assert torch.equal(q(torch.zeros(3, 3, 8, dtype=torch.float64)), torch.zeros(3, 3, 8, dtype=torch.float64))


def test_mddq_commutes_with_rotations_to_quantization_precision_naive_does_not():
    v = _vectors()
    mddq, naive = MDDQ(8, bits=8).double(), NaiveVectorQuantizer(8, bits=8).double()
    mddq.calibrate(v)
    naive.calibrate(v)
    rotations = random_rotations(20, seed=1)
    errors: dict[str, list] = {"mddq": [], "naive": []}
    for r in rotations:
        vr = torch.einsum("ab,nbf->naf", r, v)
        for name, q in (("mddq", mddq), ("naive", naive)):
            with torch.no_grad():
                diff = q(vr) - torch.einsum("ab,nbf->naf", r, q(v))
            errors[name].append((diff.norm(dim=1) / v.norm(dim=1)).mean())  # relative to each vector's size
    mddq_err, naive_err = float(torch.stack(errors["mddq"]).mean()), float(torch.stack(errors["naive"]).mean())
    assert mddq_err < 2.0 / 127  # direction rounding only: a fraction of one 8-bit step, relative to |v|
    assert naive_err > 5 * mddq_err  # per-component steps are set by the channel's largest vector


def test_sphere_codebook_is_unit_and_roughly_uniform():
    book = fibonacci_sphere(1024)
    assert torch.allclose(book.norm(dim=1), torch.ones(1024, dtype=torch.float64))
    assert float(book.mean(0).norm()) < 1e-2
    q = MDDQ(4, bits=8, codebook="sphere").double()
    v = _vectors(f=4)
    q.calibrate(v)
    out = q(v)
    cos = (out * v).sum(1) / (out.norm(dim=1) * v.norm(dim=1) + 1e-30)
    assert float(cos[out.norm(dim=1) > 0].min().detach()) > 0.99


def test_unsupported_bit_width_lists_the_supported_ones():
    with pytest.raises(QuantizationError, match=r"supported weight bit widths: \[4, 8\]"):
        QuantSpec(weight_bits=3)
    with pytest.raises(QuantizationError, match="supported activation bit widths"):
        ScalarQuantizer(bits=5)


def test_unknown_vector_method_is_refused_when_the_spec_is_made():
    with pytest.raises(QuantizationError, match="vector method 'polar'.*mddq, mddq-global"):
        QuantSpec(4, 8, vector="polar")


def test_quantizing_without_calibration_data_is_refused(small_model):
    with pytest.raises(QuantizationError, match="calibration"):
        quantize(small_model, QuantSpec(4, 8), None)
    with pytest.raises(QuantizationError, match="no configurations"):
        quantize(small_model, QuantSpec(4, 8), [])


def _calibration(ethanol, n: int = 6, seed: int = 0):
    numbers, positions = ethanol
    rng = np.random.default_rng(seed)
    z = torch.as_tensor(numbers).long().repeat(n)
    x = torch.as_tensor(np.concatenate([positions + rng.normal(0, 0.1, positions.shape) for _ in range(n)]))
    batch = torch.arange(n).repeat_interleave(len(numbers))
    return [(z, x.float(), batch)]


def test_lee_of_mddq_model_is_far_below_naive(small_model, ethanol):
    numbers, positions = ethanol
    configs = [positions + np.random.default_rng(k).normal(0, 0.05, positions.shape) for k in range(2)]
    lee = {}
    for method in ("mddq", "naive", "none"):
        fq = quantize(small_model, QuantSpec(8, 8, method), _calibration(ethanol)).double()
        for q in fq.input_q.values():  # isolate the vector quantizers (scalars are invariant anyway)
            q.enabled = False
        lee[method] = local_equivariance_error(fq, numbers, configs, n_rotations=12)["lee_mev_per_a"]
    assert lee["none"] < 1e-6  # weight quantization alone keeps exact equivariance (float64 floor)
    assert lee["mddq"] < lee["naive"] / 3


def test_mddq_in_local_frames_commutes_with_rotations_exactly(ethanol):
    from simulation.model import _edge_vectors, neighbour_list
    from simulation.quantize.graph import local_frames

    x = torch.as_tensor(ethanol[1])
    v = _vectors(n=len(x), f=8)
    q = MDDQ(8, bits=8).double()
    q.calibrate(v)

    def frames_of(pos):
        batch = torch.zeros(len(pos), dtype=torch.long)
        i, j, images = neighbour_list(pos, 5.0, batch)
        vec = _edge_vectors(pos, i, j, images, batch, None)
        d = vec.norm(dim=-1)
        return local_frames(vec / d[:, None], d, i, len(pos))

    f0 = frames_of(x)
    assert torch.allclose(torch.bmm(f0, f0.transpose(1, 2)), torch.eye(3, dtype=torch.float64).expand(len(x), 3, 3))
    assert torch.allclose(torch.linalg.det(f0), torch.ones(len(x), dtype=torch.float64))
    with torch.no_grad():
        base = q(v, f0)
        for r in random_rotations(10, seed=4):
            vr = torch.einsum("ab,nbf->naf", r, v)
            diff = q(vr, frames_of(x @ r.T)) - torch.einsum("ab,nbf->naf", r, base)
            assert float(diff.abs().max()) < 1e-9  # the grid turns with the molecule


def test_row_quantizer_gives_each_row_its_own_grid():
    from simulation.quantize.mddq import RowQuantizer, ScalarQuantizer

    x = torch.tensor([[100.0, -3.0, 0.5], [0.02, -0.01, 0.005]])
    row = RowQuantizer(8)
    q = row(x)
    for r in range(2):  # every row is rounded on a grid of its own largest magnitude / 127
        step = float(x[r].abs().max()) / 127
        assert float((q[r] - x[r]).abs().max()) <= step / 2 + 1e-9
        assert float(q[r].abs().max()) == pytest.approx(float(x[r].abs().max()))
    tensor = ScalarQuantizer(8)
    tensor.calibrate(x)
    assert bool((tensor(x)[1] == 0).all())  # one step for the whole tensor: the small row is lost
    assert bool((q[1] != 0).all())
    row.set_bits(4)
    assert row.bits == 4 and float((row(x)[0] - x[0]).abs().max()) <= 100.0 / 7 / 2 + 1e-6
    with pytest.raises(QuantizationError, match="supported activation bit widths"):
        row.set_bits(3)


def test_unknown_activation_scale_is_refused():
    with pytest.raises(QuantizationError, match="tensor, row"):
        QuantSpec(4, 8, "mddq", activation_scale="channel")
