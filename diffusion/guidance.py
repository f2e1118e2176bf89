"""Classifier-free guidance weight schedules, and the calibration of C2FG's decay rate.

>>> from diffusion.guidance import C2FG
>>> schedule = C2FG(w0=4.0, lam=3.0)
>>> schedule.weight(0.0), round(schedule.weight(1.0), 3)  # strongest at data, weak at noise
(4.0, 0.199)

**Time convention.** Every schedule is a function of ``t_norm``, the *forward* diffusion time
normalised to [0, 1]: ``t_norm = 1`` is pure noise (where sampling starts) and ``t_norm = 0`` is
data (where sampling ends). A sampler at scheduler timestep ``t`` of ``T`` training steps uses
``t_norm = t / (T - 1)`` (see :func:`normalised_time`).

**Guidance rule.** With conditional and unconditional noise predictions ``eps_c`` and ``eps_u``,
the guided prediction is ``eps = eps_c + w(t_norm) * (eps_c - eps_u)`` (Ho & Salimans): ``w = 0`` is
plain conditional sampling, larger ``w`` pushes harder towards the condition.

**C2FG.** The gap between conditional and unconditional scores is bounded by a term that decays
exponentially in diffusion time, so the weight follows ``w(t) = w0 * exp(-lam * t)``: weak near
noise, strongest near data. :func:`calibrate_lambda` measures ``||eps_c - eps_u||`` against
``t_norm`` on held-out latents for a trained denoiser and fits that decay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.axes
    import torch

__all__ = [
    "GuidanceSchedule",
    "Constant",
    "Linear",
    "Cosine",
    "Interval",
    "C2FG",
    "normalised_time",
    "fit_exponential_decay",
    "measure_score_discrepancy",
    "calibrate_lambda",
    "fit_calibration",
    "CalibrationResult",
]


def normalised_time(timestep: float, num_train_timesteps: int) -> float:
    """Scheduler timestep (0 .. T-1) -> forward diffusion time in [0, 1] (1 = pure noise).

    >>> normalised_time(999, 1000), normalised_time(0, 1000)
    (1.0, 0.0)
    """
    return min(max(float(timestep) / (num_train_timesteps - 1), 0.0), 1.0)


def _check_finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"guidance parameter {name} must be a finite number, got {value}")
    return value


class GuidanceSchedule:
    """A guidance weight as a function of forward diffusion time ``t_norm`` in [0, 1] (1 = noise, 0 = data).

    >>> Constant(2.0).weights([0.0, 0.5, 1.0]).tolist()
    [2.0, 2.0, 2.0]
    """

    def weight(self, t_norm: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, t_norm: float) -> float:
        t = float(t_norm)
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t_norm must lie in [0, 1] (1 = pure noise, 0 = data), got {t}")
        return self.weight(t)

    def weights(self, ts: Sequence[float] | np.ndarray) -> np.ndarray:
        """The weight at each normalised time in ``ts``."""
        return np.array([self(t) for t in ts], dtype=float)

    def plot(self, ax: matplotlib.axes.Axes | None = None, n: int = 201, **kwargs: Any) -> matplotlib.axes.Axes:
        """Plot w(t_norm) over [0, 1] with noise on the left, as sampling runs; returns the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4, 3))
        ts = np.linspace(0.0, 1.0, n)
        ax.plot(ts, self.weights(ts), label=kwargs.pop("label", repr(self)), **kwargs)
        if not ax.xaxis_inverted():
            ax.invert_xaxis()  # sampling runs from t=1 (noise) to t=0 (data)
        ax.set_xlabel("forward diffusion time t (1 = noise, 0 = data)")
        ax.set_ylabel("guidance weight w(t)")
        ax.legend(fontsize="small")
        return ax

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v:g}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))


class Constant(GuidanceSchedule):
    """The same weight at every time (standard classifier-free guidance).

    >>> Constant(3.0).weight(0.7)
    3.0
    """

    def __init__(self, w: float):
        self.w = _check_finite("w", w)

    def weight(self, t_norm: float) -> float:
        return self.w


class Linear(GuidanceSchedule):
    """Linear in time: ``w0`` at data (t=0), ``w1`` at noise (t=1); ``w(t) = w0 * (1 - t) + w1 * t``.

    >>> Linear(4.0).weight(0.0), Linear(4.0).weight(1.0), Linear(4.0, 2.0).weight(0.5)
    (4.0, 0.0, 3.0)
    """

    def __init__(self, w0: float, w1: float = 0.0):
        self.w0 = _check_finite("w0", w0)
        self.w1 = _check_finite("w1", w1)

    def weight(self, t_norm: float) -> float:
        return self.w0 * (1.0 - t_norm) + self.w1 * t_norm


class Cosine(GuidanceSchedule):
    """Half-cosine ramp: ``w(t) = w0 * (1 + cos(pi * t)) / 2``, ``w0`` at data, 0 at noise.

    >>> Cosine(4.0).weight(0.0), round(Cosine(4.0).weight(0.5), 6), round(Cosine(4.0).weight(1.0), 6)
    (4.0, 2.0, 0.0)
    """

    def __init__(self, w0: float):
        self.w0 = _check_finite("w0", w0)

    def weight(self, t_norm: float) -> float:
        return self.w0 * 0.5 * (1.0 + math.cos(math.pi * t_norm))


class Interval(GuidanceSchedule):
    """Guidance only inside a window of times (guidance-interval style): ``w`` on [t_lo, t_hi], else 0.

    >>> s = Interval(3.0, 0.2, 0.6)
    >>> s.weight(0.1), s.weight(0.4), s.weight(0.9)
    (0.0, 3.0, 0.0)
    """

    def __init__(self, w: float, t_lo: float, t_hi: float):
        self.w = _check_finite("w", w)
        self.t_lo = _check_finite("t_lo", t_lo)
        self.t_hi = _check_finite("t_hi", t_hi)
        if not 0.0 <= self.t_lo <= self.t_hi <= 1.0:
            raise ValueError(f"Interval needs 0 <= t_lo <= t_hi <= 1, got t_lo={t_lo}, t_hi={t_hi}")

    def weight(self, t_norm: float) -> float:
        return self.w if self.t_lo <= t_norm <= self.t_hi else 0.0


class C2FG(GuidanceSchedule):
    """Exponentially time-decayed guidance: ``w(t) = w0 * exp(-lam * t)`` (strongest at data, t=0).

    >>> C2FG(4.0, 0.0).weight(1.0), round(C2FG(4.0, 2.0).weight(0.5), 4)
    (4.0, 1.4715)
    """

    def __init__(self, w0: float, lam: float):
        self.w0 = _check_finite("w0", w0)
        self.lam = _check_finite("lam", lam)
        if self.lam < 0:
            raise ValueError(f"C2FG decay rate lam must be >= 0 (weak near noise, strong near data), got {lam}")

    def weight(self, t_norm: float) -> float:
        return self.w0 * math.exp(-self.lam * t_norm)


# ------------------------------------------------------------------------------------------ calibration
def fit_exponential_decay(t: Sequence[float] | np.ndarray, discrepancy: Sequence[float] | np.ndarray) -> tuple:
    """Least-squares fit of ``log d = log A - lam * t``; returns ``(A, lam, r2)``.

    >>> ts = np.linspace(0, 1, 11)
    >>> A, lam, r2 = fit_exponential_decay(ts, 2.0 * np.exp(-3.0 * ts))
    >>> round(A, 6), round(lam, 6), round(r2, 6)
    (2.0, 3.0, 1.0)
    """
    t = np.asarray(t, dtype=float)
    d = np.asarray(discrepancy, dtype=float)
    keep = np.isfinite(t) & np.isfinite(d) & (d > 0)
    if keep.sum() < 2:
        raise ValueError("need at least two positive, finite discrepancy values to fit an exponential decay")
    t, log_d = t[keep], np.log(d[keep])
    design = np.stack([np.ones_like(t), -t], axis=1)
    (log_a, lam), *_ = np.linalg.lstsq(design, log_d, rcond=None)
    residual = log_d - design @ np.array([log_a, lam])
    total = ((log_d - log_d.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
    return float(np.exp(log_a)), float(lam), float(r2)


def measure_score_discrepancy(
    denoiser: torch.nn.Module,
    latents: torch.Tensor,
    conditions: torch.Tensor,
    masks: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    t_norms: Sequence[float],
    seed: int = 0,
) -> np.ndarray:
    """Mean ``||eps_c - eps_u||`` over held-out ``latents`` noised to each forward time in ``t_norms``.

    ``conditions``/``masks`` (n, n_props) are the latents' own normalised properties and which of
    them to condition on; the unconditional prediction uses an all-False mask. Both predictions come
    from one batched forward pass per time.
    """
    import torch

    n_train_steps = len(alphas_cumprod)
    generator = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for t_norm in t_norms:
            step = int(round(float(t_norm) * (n_train_steps - 1)))
            noise = torch.randn(latents.shape, generator=generator)
            a = alphas_cumprod[step]
            noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
            timesteps = torch.full((2 * len(latents),), step, dtype=torch.long)
            eps = denoiser(
                torch.cat([noisy, noisy]),
                timesteps,
                torch.cat([conditions, conditions]),
                torch.cat([masks, torch.zeros_like(masks)]),
            ).sample
            eps_c, eps_u = eps.chunk(2)
            out.append(float((eps_c - eps_u).norm(dim=1).mean()))
    return np.array(out)


@dataclass
class CalibrationResult:
    """The measured discrepancy curve and its exponential fit ``d(t) = amplitude * exp(-lam * t)``.

    ``discrepancy`` is the fitted quantity: the score gap ``||eps_c - eps_u|| / sigma_t`` (the score
    is ``-eps / sigma_t``) when ``quantity == "score"``, the raw noise-prediction gap when ``"eps"``;
    ``eps_discrepancy`` is always the raw ``||eps_c - eps_u||``.
    """

    t_norm: np.ndarray
    discrepancy: np.ndarray
    amplitude: float
    lam: float
    r2: float
    fit_range: tuple[float, float]
    quantity: str = "score"
    eps_discrepancy: np.ndarray | None = None
    plot_path: Path | None = field(default=None)

    def schedule(self, w0: float) -> C2FG:
        """The C2FG schedule with this decay rate."""
        return C2FG(w0, max(self.lam, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "t_norm": [round(float(x), 4) for x in self.t_norm],
            "discrepancy": [round(float(x), 5) for x in self.discrepancy],
            "amplitude": self.amplitude,
            "lam": self.lam,
            "r2": self.r2,
            "fit_range": list(self.fit_range),
            "quantity": self.quantity,
            "eps_discrepancy": None
            if self.eps_discrepancy is None
            else [round(float(x), 5) for x in self.eps_discrepancy],
            "plot": str(self.plot_path) if self.plot_path else None,
        }


def calibrate_lambda(
    denoiser: torch.nn.Module,
    latents: torch.Tensor,
    conditions: torch.Tensor,
    masks: torch.Tensor | None = None,
    alphas_cumprod: torch.Tensor | None = None,
    n_times: int = 21,
    fit_range: tuple[float, float] = (0.05, 1.0),
    seed: int = 0,
    plot_path: str | Path | None = None,
    quantity: str = "score",
) -> CalibrationResult:
    """Measure ``||eps_c - eps_u||`` against ``t_norm`` for a trained denoiser and fit its exponential decay.

    >>> # result = calibrate_lambda(pipe.denoiser, heldout_latents, heldout_conditions, plot_path="c2fg.png")
    >>> # guidance = result.schedule(w0=4.0)

    ``alphas_cumprod`` defaults to the squared-cosine DDPM schedule the denoiser was trained with.
    ``quantity="score"`` fits the score gap ``||eps_c - eps_u|| / sigma_t`` (sigma_t = sqrt(1 - alpha_bar_t)),
    the quantity whose bound decays exponentially; ``"eps"`` fits the raw noise-prediction gap.
    Only times inside ``fit_range`` enter the log-linear least-squares fit (the default leaves out
    t = 0, where sigma_t is nearly 0); all are plotted.
    """
    if quantity not in ("score", "eps"):
        raise ValueError(f"quantity must be 'score' or 'eps', got {quantity!r}")
    import torch

    if alphas_cumprod is None:
        from diffusers import DDPMScheduler

        n_steps = int(getattr(getattr(denoiser, "config", None), "num_train_timesteps", 1000))
        alphas_cumprod = DDPMScheduler(num_train_timesteps=n_steps, beta_schedule="squaredcos_cap_v2").alphas_cumprod
    if masks is None:
        masks = torch.isfinite(conditions)
    t_norms = np.linspace(0.0, 1.0, n_times)
    eps_gap = measure_score_discrepancy(denoiser, latents, conditions, masks, alphas_cumprod, t_norms, seed)
    return fit_calibration(t_norms, eps_gap, alphas_cumprod, quantity, fit_range, plot_path)


def fit_calibration(
    t_norms: np.ndarray,
    eps_gap: np.ndarray,
    alphas_cumprod: torch.Tensor | np.ndarray,
    quantity: str = "score",
    fit_range: tuple[float, float] = (0.05, 1.0),
    plot_path: str | Path | None = None,
) -> CalibrationResult:
    """Fit the exponential decay to a measured ``||eps_c - eps_u||`` curve (see :func:`calibrate_lambda`)."""
    t_norms, eps_gap = np.asarray(t_norms, dtype=float), np.asarray(eps_gap, dtype=float)
    alphas = np.asarray(alphas_cumprod, dtype=float)
    steps = np.round(t_norms * (len(alphas) - 1)).astype(int)
    discrepancy = eps_gap / np.sqrt(1.0 - alphas[steps]) if quantity == "score" else eps_gap
    inside = (t_norms >= fit_range[0]) & (t_norms <= fit_range[1])
    amplitude, lam, r2 = fit_exponential_decay(t_norms[inside], discrepancy[inside])
    result = CalibrationResult(
        t_norms, discrepancy, amplitude, lam, r2, tuple(fit_range), quantity=quantity, eps_discrepancy=eps_gap
    )
    if plot_path is not None:
        result.plot_path = _plot_calibration(result, Path(plot_path))
    return result


def _plot_calibration(result: CalibrationResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    measured = (
        r"$\|\epsilon_c - \epsilon_\varnothing\| / \sigma_t$"
        if result.quantity == "score"
        else r"$\|\epsilon_c - \epsilon_\varnothing\|$"
    )
    ax.semilogy(result.t_norm, result.discrepancy, "o", label=f"measured {measured}")
    ts = np.linspace(0, 1, 101)
    ax.semilogy(
        ts,
        result.amplitude * np.exp(-result.lam * ts),
        "-",
        label=rf"fit ${result.amplitude:.3g}\,e^{{-{result.lam:.2f} t}}$ ($R^2$={result.r2:.2f})",
    )
    ax.invert_xaxis()
    ax.set_xlabel("forward diffusion time t (1 = noise, 0 = data)")
    ax.set_ylabel("score discrepancy" if result.quantity == "score" else "noise-prediction discrepancy")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
