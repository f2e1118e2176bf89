"""Fake quantizers: LSQ scalar quantizers, the magnitude-direction decoupled vector quantizer (MDDQ) and the
naive per-component vector baseline.

Every quantizer maps a float tensor to the nearest point of its grid and back ("fake quantization"), with a
straight-through estimator (STE) for ``round``, so a model that uses them stays differentiable: forces are
still ``-dE/dx`` by autograd through the fake-quant graph.

* :class:`ScalarQuantizer` — symmetric signed ``b``-bit grid ``s * {-2^(b-1), ..., 2^(b-1) - 1}`` with a learned
  step ``s`` (LSQ: Esser et al. 2020), per tensor or per channel (last dimension).
* :class:`MDDQ` — for vector features ``v: (atoms, 3, F)`` (channels-last, as the layers hold them): the norm
  ``r = |v|`` goes through an unsigned ``b``-bit LSQ quantizer per channel, the unit direction ``u = v / r``
  is quantized per component on ``[-1, 1]`` and renormalised (or snapped to a Fibonacci sphere codebook),
  and ``v_hat = r_hat * u_hat``. Norms are rotation invariant. The direction components are taken in each
  atom's local frame (its two nearest non-collinear neighbours, see
  :func:`simulation.quantize.graph.local_frames`), which turns with the molecule, so the rounding grid turns
  with it and the quantizer commutes with rotations (``"mddq"``); with the grid fixed to the x, y, z axes
  (``"mddq-global"``) the direction rounding, relative to ``|v|``, is the symmetry error left.
* :class:`NaiveVectorQuantizer` — the baseline: one signed uniform quantizer applied to x, y and z independently
  (per channel step), which does not commute with rotations.

>>> q = MDDQ(features=8, bits=8); q.calibrate(torch.randn(100, 3, 8))
>>> v_hat = q(torch.randn(5, 3, 8))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from workbench.errors import WorkbenchError

__all__ = [
    "QuantizationError",
    "SUPPORTED_WEIGHT_BITS",
    "SUPPORTED_ACTIVATION_BITS",
    "check_bits",
    "round_ste",
    "ScalarQuantizer",
    "RowQuantizer",
    "row_fake_quant",
    "row_step",
    "ACTIVATION_SCALES",
    "MDDQ",
    "NaiveVectorQuantizer",
    "fibonacci_sphere",
    "VECTOR_METHODS",
    "vector_quantizer",
]

SUPPORTED_WEIGHT_BITS = (4, 8)  # what pack.py can store: two int4 per byte, or one int8
SUPPORTED_ACTIVATION_BITS = (4, 8, 16)
VECTOR_METHODS = ("mddq", "mddq-global", "mddq-sphere", "naive", "none")
EPS = 1e-6  # norm floor in Angstrom-free feature units: r -> 0 gives v_hat -> 0, never NaN


class QuantizationError(WorkbenchError, ValueError):
    """A quantization request that cannot be honoured (bit width, missing calibration, bad method)."""

    def __init__(self, what: object, reason: str):
        super().__init__(f"{what}: {reason}")
        self.what, self.reason = what, reason


def check_bits(bits: int, kind: str = "weight") -> int:
    """Return ``bits`` if supported for ``kind`` (``"weight"`` or ``"activation"``), else raise listing them."""
    supported = SUPPORTED_WEIGHT_BITS if kind == "weight" else SUPPORTED_ACTIVATION_BITS
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in supported:
        raise QuantizationError(
            f"{kind} bits {bits!r}", f"unsupported bit width; supported {kind} bit widths: {list(supported)}"
        )
    return bits


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` forward, identity backward (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def _grad_scale(step: Tensor, scale: float) -> Tensor:
    """``step`` forward, gradient multiplied by ``scale`` (the LSQ step-size gradient normalisation)."""
    return (step - step * scale).detach() + step * scale


def fake_quant(x: Tensor, step: Tensor, qmin: int, qmax: int, grad_scale: float | None = None) -> Tensor:
    """``clamp(round(x / step), qmin, qmax) * step`` with STE; ``step`` broadcasts against ``x``."""
    if grad_scale is not None:
        step = _grad_scale(step, grad_scale)
    return torch.clamp(round_ste(x / step), qmin, qmax) * step


class ScalarQuantizer(nn.Module):
    """Signed symmetric ``bits``-bit fake quantizer with a learned (LSQ) step, per tensor or per channel.

    ``channels=None`` gives one step for the whole tensor; ``channels=C`` one step per entry of the last
    dimension (``x: (..., C)``). ``unsigned=True`` uses the grid ``{0, ..., 2^b - 1}`` (for norms).
    Call :meth:`calibrate` on representative inputs before use; an uncalibrated quantizer refuses to run.
    """

    def __init__(self, bits: int = 8, channels: int | None = None, *, unsigned: bool = False, kind: str = "activation"):
        super().__init__()
        self.kind = kind
        self.bits = check_bits(bits, kind)
        self.unsigned = unsigned
        self.channels = channels
        self.enabled = True
        self.step = nn.Parameter(torch.ones(channels if channels is not None else ()))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    def set_bits(self, bits: int) -> None:
        """Change the bit width, keeping the covered range (the step is rescaled)."""
        bits = check_bits(bits, self.kind)
        if bits != self.bits:
            with torch.no_grad():
                self.step.mul_(self.qmax_for(self.bits) / self.qmax_for(bits))
            self.bits = bits

    def qmax_for(self, bits: int) -> int:
        return 2**bits - 1 if self.unsigned else 2 ** (bits - 1) - 1

    @property
    def qmin(self) -> int:
        return 0 if self.unsigned else -(2 ** (self.bits - 1))

    @property
    def qmax(self) -> int:
        return self.qmax_for(self.bits)

    @torch.no_grad()
    def calibrate(self, x: Tensor, *, mse: bool = False) -> None:
        """Set the step from the largest magnitude of ``x`` (``mse=True``: best clipping by grid search)."""
        flat = (
            x.detach().abs().reshape(-1, self.channels)
            if self.channels is not None
            else x.detach().abs().reshape(-1, 1)
        )
        peak = flat.amax(0).clamp_min(1e-8)
        if mse:
            best_err, best = None, peak.clone()
            for alpha in torch.linspace(0.3, 1.0, 15).tolist():
                step = alpha * peak / self.qmax
                xq = torch.clamp(torch.round(flat / step), self.qmin, self.qmax) * step
                err = ((xq - flat) ** 2).sum(0)
                if best_err is None:
                    best_err, best = err, step
                else:
                    better = err < best_err
                    best_err = torch.where(better, err, best_err)
                    best = torch.where(better, step, best)
            step = best
        else:
            step = peak / self.qmax
        self.step.copy_(step.reshape(self.step.shape).to(self.step.dtype))
        self.calibrated.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        # (a compiled graph skips the data-dependent check: FastPotential checks calibration before compiling)
        if not torch.compiler.is_compiling() and not bool(self.calibrated):
            raise QuantizationError(
                "quantizer", "not calibrated; quantize with calibration data (training configurations) first"
            )
        n = x.numel() // (self.channels or 1)
        scale = 1.0 / math.sqrt(max(n, 1) * self.qmax)
        step = self.step.abs().clamp_min(1e-12)
        return fake_quant(x, step, self.qmin, self.qmax, scale if self.training else None)


ACTIVATION_SCALES = ("tensor", "row")


def row_fake_quant(x: Tensor, bits: int) -> Tensor:
    """Signed ``bits``-bit fake quantization of ``x`` with one step per row (last dimension), set on the fly.

    Each row (one atom's or one pair's features) gets the step ``max|x_row| / qmax``: dynamic per-token
    scaling, as int8 matmuls with a per-row activation scale compute it. The step is treated as a
    constant for gradients, and rounding is straight-through.
    """
    qmax = 2 ** (bits - 1) - 1
    step = row_step(x, bits)
    return torch.clamp(round_ste(x / step), -qmax - 1, qmax) * step


def row_step(x: Tensor, bits: int) -> Tensor:
    """The per-row step of :func:`row_fake_quant`: ``max|x_row| / qmax`` (detached), shape ``(..., 1)``."""
    return (x.detach().abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)).clamp_min(1e-12)


class RowQuantizer(nn.Module):
    """Activation quantizer with a dynamic per-row step (:func:`row_fake_quant`); nothing to calibrate or learn."""

    def __init__(self, bits: int = 8):
        super().__init__()
        self.kind = "activation"
        self.bits = check_bits(bits, "activation")
        self.enabled = True

    def set_bits(self, bits: int) -> None:
        self.bits = check_bits(bits, self.kind)

    def calibrate(self, x: Tensor, *, mse: bool = False) -> None:  # noqa: ARG002 - the step is set per call
        """Nothing to set: the step comes from each row as it is quantized."""

    def forward(self, x: Tensor) -> Tensor:
        return row_fake_quant(x, self.bits) if self.enabled else x

    def extra_repr(self) -> str:
        return f"bits={self.bits}, step=max|row|/{2 ** (self.bits - 1) - 1}"


def fibonacci_sphere(n: int) -> Tensor:
    """``n`` nearly uniform unit vectors ``(n, 3)`` on the sphere (golden-angle Fibonacci lattice)."""
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = math.pi * (3.0 - math.sqrt(5.0)) * k
    rho = torch.sqrt(1.0 - z * z)
    return torch.stack([rho * torch.cos(phi), rho * torch.sin(phi), z], dim=1)


class MDDQ(nn.Module):
    """Magnitude-direction decoupled quantizer for vector features ``v: (atoms, 3, F)`` (channels-last).

    ``r = |v|`` (per atom and channel) is quantized by an unsigned ``bits``-bit LSQ quantizer with one step per
    channel; ``u = v / r`` is quantized per Cartesian component on a ``bits``-bit grid over ``[-1, 1]`` and
    renormalised (``codebook="grid"``), or snapped to the nearest of ``2^direction_bits`` Fibonacci-lattice
    directions (``codebook="sphere"``). The result is ``r_hat * u_hat``. With ``use_frames`` (default) the grid
    is laid in each atom's local frame passed to :meth:`forward`, so it commutes with rotations. ``r`` is
    computed as ``sqrt(|v|^2 + eps^2)`` so that ``v = 0`` has a finite gradient and quantizes to exactly 0.
    """

    def __init__(
        self,
        features: int,
        bits: int = 8,
        *,
        codebook: str = "grid",
        direction_bits: int | None = None,
        use_frames: bool = True,
    ):
        super().__init__()
        if codebook not in ("grid", "sphere"):
            raise QuantizationError(f"codebook {codebook!r}", "choose 'grid' or 'sphere'")
        self.norm = ScalarQuantizer(bits, features, unsigned=True)
        self.codebook = codebook
        self.use_frames = use_frames
        self.direction_bits = direction_bits or (bits if codebook == "grid" else min(bits + 4, 12))
        self.enabled = True
        if codebook == "sphere":
            self.register_buffer("directions", fibonacci_sphere(2**self.direction_bits).float(), persistent=False)

    @property
    def bits(self) -> int:
        return self.norm.bits

    def set_bits(self, bits: int) -> None:
        self.norm.set_bits(bits)
        if self.codebook == "grid":
            self.direction_bits = bits

    @torch.no_grad()
    def calibrate(self, v: Tensor) -> None:
        """Set the norm steps from vectors ``v: (atoms, 3, F)``."""
        self.norm.calibrate(v.detach().norm(dim=1))

    def quantize_direction(self, u: Tensor, frames: Tensor | None = None) -> Tensor:
        """Unit vectors ``u: (atoms, 3, F)`` -> quantized unit vectors (STE through the rounding).

        ``frames: (atoms, 3, 3)`` (rows = local axes) puts the grid in each atom's frame.
        """
        if frames is not None:
            frames = frames.to(u.dtype)
            local = torch.bmm(frames, u)  # components along the local axes
            return torch.bmm(frames.transpose(1, 2), self.quantize_direction(local))
        if self.codebook == "grid":
            levels = 2 ** (self.direction_bits - 1) - 1
            uq = round_ste(u * levels) / levels
            n = torch.sqrt((uq * uq).sum(1, keepdim=True))
            return uq / n.clamp_min(1.0 / levels)
        flat = u.transpose(1, 2).reshape(-1, 3)  # (atoms * F, 3)
        book = self.directions.to(u.dtype)
        index = (flat.detach() @ book.T).argmax(1)
        snapped = book[index].reshape(u.shape[0], u.shape[2], 3).transpose(1, 2)
        return u + (snapped - u).detach()

    def forward(self, v: Tensor, frames: Tensor | None = None) -> Tensor:
        if not self.enabled:
            return v
        r = torch.sqrt((v * v).sum(1) + EPS * EPS)  # (atoms, F) rotation invariant
        u = v / r[:, None, :]  # (atoms, 3, F)
        return self.norm(r)[:, None, :] * self.quantize_direction(u, frames if self.use_frames else None)


class NaiveVectorQuantizer(nn.Module):
    """Baseline: a signed ``bits``-bit LSQ quantizer on each Cartesian component independently (per channel)."""

    def __init__(self, features: int, bits: int = 8):
        super().__init__()
        self.component = ScalarQuantizer(bits, features)
        self.enabled = True

    @property
    def bits(self) -> int:
        return self.component.bits

    def set_bits(self, bits: int) -> None:
        self.component.set_bits(bits)

    @torch.no_grad()
    def calibrate(self, v: Tensor) -> None:
        """Set the per-channel steps from the largest component of ``v: (atoms, 3, F)``."""
        self.component.calibrate(v.detach().reshape(-1, v.shape[-1]))

    def forward(self, v: Tensor, frames: Tensor | None = None) -> Tensor:  # frames unused: fixed x, y, z grid
        return self.component(v) if self.enabled else v


class _NoVectorQuantizer(nn.Module):
    """Float vector features (weights-only or scalar-only quantization)."""

    def forward(self, v: Tensor, frames: Tensor | None = None) -> Tensor:
        return v


def vector_quantizer(method: str, features: int, bits: int) -> nn.Module:
    """The vector quantizer named ``method`` (one of :data:`VECTOR_METHODS`)."""
    if method == "mddq":
        return MDDQ(features, bits)
    if method == "mddq-global":
        return MDDQ(features, bits, use_frames=False)
    if method == "mddq-sphere":
        return MDDQ(features, bits, codebook="sphere", use_frames=False)
    if method == "naive":
        return NaiveVectorQuantizer(features, bits)
    if method == "none":
        return _NoVectorQuantizer()
    raise QuantizationError(f"vector method {method!r}", f"unknown; choose one of {', '.join(VECTOR_METHODS)}")
