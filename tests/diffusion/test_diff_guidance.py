"""Guidance schedules: the time convention (t=1 noise, t=0 data), each schedule's values, calibration."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from diffusion.denoiser import DenoiserOutput
from diffusion.guidance import (
    C2FG,
    Constant,
    Cosine,
    GuidanceSchedule,
    Interval,
    Linear,
    calibrate_lambda,
    fit_exponential_decay,
    normalised_time,
)


def test_time_convention_maps_scheduler_timesteps_to_forward_time():
    # scheduler timestep T-1 is pure noise (t_norm = 1), timestep 0 is data (t_norm = 0)
    assert normalised_time(999, 1000) == 1.0
    assert normalised_time(0, 1000) == 0.0
    assert normalised_time(499.5, 1000) == pytest.approx(0.5)


def test_c2fg_is_strongest_at_data_and_weak_at_noise():
    schedule = C2FG(w0=4.0, lam=3.0)
    assert schedule(0.0) == 4.0  # data end
    assert schedule(1.0) == pytest.approx(4.0 * math.exp(-3.0))  # noise end
    assert schedule(0.0) > schedule(1.0)


def test_c2fg_decays_monotonically_in_forward_time():
    weights = C2FG(5.0, 2.5).weights(np.linspace(0, 1, 101))
    assert np.all(np.diff(weights) < 0)
    assert C2FG(5.0, 0.0).weights([0, 0.5, 1]).tolist() == [5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (Constant(2.5), {0.0: 2.5, 0.5: 2.5, 1.0: 2.5}),
        (Linear(4.0), {0.0: 4.0, 0.25: 3.0, 1.0: 0.0}),
        (Linear(4.0, 2.0), {0.0: 4.0, 0.5: 3.0, 1.0: 2.0}),
        (Cosine(4.0), {0.0: 4.0, 0.5: 2.0, 1.0: 0.0}),
        (Interval(3.0, 0.2, 0.6), {0.0: 0.0, 0.2: 3.0, 0.4: 3.0, 0.6: 3.0, 0.8: 0.0}),
        (C2FG(2.0, math.log(2.0)), {0.0: 2.0, 1.0: 1.0}),
    ],
)
def test_schedule_values(schedule: GuidanceSchedule, expected: dict[float, float]):
    for t, w in expected.items():
        assert schedule(t) == pytest.approx(w, abs=1e-12), (schedule, t)


@pytest.mark.parametrize("schedule", [Constant(1.0), Linear(2.0), Cosine(2.0), Interval(1, 0, 1), C2FG(1, 1)])
def test_time_outside_unit_interval_is_rejected(schedule: GuidanceSchedule):
    with pytest.raises(ValueError, match="t_norm"):
        schedule(1.5)
    with pytest.raises(ValueError, match="t_norm"):
        schedule(-0.1)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="lam"):
        C2FG(4.0, -1.0)
    with pytest.raises(ValueError, match="w0"):
        C2FG(float("nan"), 1.0)
    with pytest.raises(ValueError, match="t_lo"):
        Interval(2.0, 0.8, 0.2)


def test_schedules_plot_themselves_with_noise_on_the_left():
    ax = C2FG(4.0, 3.0).plot()
    Constant(1.0).plot(ax=ax)
    assert len(ax.lines) == 2
    assert ax.xaxis_inverted()
    x, y = ax.lines[0].get_data()
    assert y[np.argmin(x)] == pytest.approx(4.0)  # weight at t=0 (data)


def test_equality_and_repr():
    assert C2FG(4.0, 3.0) == C2FG(4.0, 3.0)
    assert C2FG(4.0, 3.0) != C2FG(4.0, 2.0)
    assert repr(C2FG(4.0, 3.0)) == "C2FG(w0=4, lam=3)"


def test_fit_recovers_known_decay_from_noisy_synthetic_data():
    rng = np.random.default_rng(0)
    ts = np.linspace(0, 1, 41)
    d = 1.7 * np.exp(-2.3 * ts) * np.exp(rng.normal(0, 0.02, ts.shape))
    amplitude, lam, r2 = fit_exponential_decay(ts, d)
    assert lam == pytest.approx(2.3, abs=0.05)
    assert amplitude == pytest.approx(1.7, rel=0.03)
    assert r2 > 0.99


class _DecayingGapDenoiser(torch.nn.Module):
    """eps_c - eps_u has norm A * exp(-lam * t_norm) exactly (times sigma_t if ``score``), whatever the input."""

    def __init__(self, amplitude: float, lam: float, score: bool = False, num_train_timesteps: int = 1000):
        super().__init__()
        self.amplitude, self.lam, self.score, self.n = amplitude, lam, score, num_train_timesteps
        self.alphas = DDPMScheduler(num_train_timesteps, beta_schedule="squaredcos_cap_v2").alphas_cumprod

    def forward(self, sample, timestep, condition, mask):
        t_norm = timestep.float() / (self.n - 1)
        gap = self.amplitude * torch.exp(-self.lam * t_norm)
        if self.score:
            gap = gap * (1 - self.alphas[timestep]).sqrt()
        direction = torch.zeros_like(sample)
        direction[:, 0] = 1.0
        conditional = mask.any(dim=1, keepdim=True).float()
        return DenoiserOutput(sample=0.3 * sample + conditional * gap.unsqueeze(1) * direction)


def test_calibration_recovers_lambda_from_a_model_and_saves_the_plot(tmp_path):
    denoiser = _DecayingGapDenoiser(amplitude=0.8, lam=3.0)
    latents = torch.randn(64, 6)
    conditions = torch.randn(64, 8)
    result = calibrate_lambda(
        denoiser, latents, conditions, n_times=11, plot_path=tmp_path / "c2fg.png", quantity="eps", fit_range=(0, 1)
    )
    # times are rounded to whole scheduler steps, hence the small tolerance
    assert result.lam == pytest.approx(3.0, abs=0.01)
    assert result.amplitude == pytest.approx(0.8, rel=0.01)
    assert (tmp_path / "c2fg.png").stat().st_size > 0
    assert result.schedule(4.0) == C2FG(4.0, result.lam)
    assert set(result.to_dict()) >= {"lam", "amplitude", "r2", "t_norm", "discrepancy"}


def test_calibration_fits_the_score_gap_by_default():
    # score = -eps / sigma_t, so a score gap A * exp(-lam * t) shows up as an eps gap A * exp(-lam * t) * sigma_t
    denoiser = _DecayingGapDenoiser(amplitude=2.0, lam=2.5, score=True)
    result = calibrate_lambda(denoiser, torch.randn(32, 6), torch.randn(32, 8), n_times=11)
    assert result.quantity == "score"
    assert result.lam == pytest.approx(2.5, abs=0.02)
    assert result.eps_discrepancy[0] < result.eps_discrepancy[5]  # the raw eps gap is not what decays
