"""Property-targeted molecule sampling: a diffusers pipeline over the SELFIES latent space.

>>> from diffusion.pipeline import MoleculeDiffusionPipeline  # doctest: +SKIP
>>> from diffusion.guidance import C2FG  # doctest: +SKIP
>>> pipe = MoleculeDiffusionPipeline.from_pretrained("diffusion/checkpoints")  # doctest: +SKIP
>>> mols = pipe(n=64, targets={"qed": 0.9, "clogp": 2.5}, guidance=C2FG(4.0, 3.0), seed=0)  # doctest: +SKIP
>>> mols[0].meta["achieved"], mols[0].meta["validation"].ok  # doctest: +SKIP
({'qed': 0.87, 'clogp': 2.61}, True)

The pipeline composes three swappable parts, as in diffusers: the autoencoder
(:class:`~diffusion.autoencoder.SelfiesVAE`), the noise predictor
(:class:`~diffusion.denoiser.LatentDenoiser`) and a diffusers scheduler (DPM-Solver++ by default;
DDIM and DDPM through :meth:`MoleculeDiffusionPipeline.use_scheduler`). Each sampling step runs the
conditional and unconditional predictions in one batched forward pass and mixes them with the
guidance weight ``w(t_norm)`` of a :mod:`diffusion.guidance` schedule:
``eps = eps_c + w * (eps_c - eps_u)``.

DPM-Solver++ works on the data prediction ``x0 = (x_t - sigma_t * eps) / alpha_t``. The
squared-cosine schedule reaches alpha_t ~ 0.006 at lambda(t) = -5.1 (diffusers' usual clip), where
any error in eps is amplified ~160x in x0; in a 64-dimensional latent space that sent the samples
to ~4x the data scale. The scheduler here starts at lambda(t) = :data:`DPM_LAMBDA_MIN`
(alpha_t ~ 0.06, the first step DDIM takes at 25 steps), which keeps the latents on the data scale.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from diffusion.autoencoder import DecodedMolecule, SelfiesVAE
from diffusion.denoiser import LatentDenoiser
from diffusion.guidance import C2FG, GuidanceSchedule, normalised_time
from workbench.chem import DesignSpec, MoleculeSet
from workbench.chem.rules import RuleSet
from workbench.errors import CheckpointError, SpecError
from workbench.parallel import contiguous_parts, fork_map

__all__ = [
    "MoleculeDiffusionPipeline",
    "SamplingResult",
    "DEFAULT_GUIDANCE",
    "SCHEDULERS",
    "DPM_LAMBDA_MIN",
    "DECODE_RETRIES",
]

DEFAULT_GUIDANCE: GuidanceSchedule = C2FG(w0=4.0, lam=3.0)
"""The guidance used when none is given."""

SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    "dpm-solver": DPMSolverMultistepScheduler,
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
}
"""The diffusers schedulers the pipeline is set up for, by short name."""

DECODE_RETRIES = 8
"""How many nearby latents the pipeline tries for a sample whose decode fails validation."""

DPM_LAMBDA_MIN = -2.8
"""Where DPM-Solver++ starts: log(alpha_t / sigma_t) of the first step (diffusers' ``lambda_min_clipped``)."""

_RANGE_MARGIN = 0.1  # targets more than 10% of the training range outside [min, max] get a warning


@dataclass
class SamplingResult:
    """Everything one sampling run produced, including the decodes that failed validation.

    ``decoded`` has one entry per requested sample, in order; ``latents`` are the final unit-scale
    latents (n, latent_dim); ``forward_passes`` counts denoiser calls.
    """

    decoded: list[DecodedMolecule]
    latents: torch.Tensor
    targets: dict[str, float]
    guidance: GuidanceSchedule
    seed: int
    num_inference_steps: int
    forward_passes: int
    weights: list[float] = field(default_factory=list)

    @property
    def validity(self) -> float:
        return sum(d.molecule is not None for d in self.decoded) / max(len(self.decoded), 1)

    @property
    def first_try_validity(self) -> float:
        """Validity without the nearby-latent retries."""
        return sum(d.molecule is not None and d.attempts == 1 for d in self.decoded) / max(len(self.decoded), 1)

    @property
    def failures(self) -> list[DecodedMolecule]:
        return [d for d in self.decoded if d.molecule is None]


class MoleculeDiffusionPipeline(DiffusionPipeline):
    """Sample molecules whose properties hit given targets, with time-scheduled classifier-free guidance.

    >>> pipe = MoleculeDiffusionPipeline.from_pretrained("diffusion/checkpoints")  # doctest: +SKIP
    >>> pipe(n=8, targets={"qed": 0.8}, seed=1).smiles  # doctest: +SKIP
    """

    model_cpu_offload_seq = "denoiser->autoencoder"

    def __init__(self, autoencoder: SelfiesVAE, denoiser: LatentDenoiser, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(autoencoder=autoencoder, denoiser=denoiser, scheduler=scheduler)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_components(
        cls, autoencoder: SelfiesVAE, denoiser: LatentDenoiser, scheduler: str = "dpm-solver"
    ) -> MoleculeDiffusionPipeline:
        """A pipeline from trained models and a scheduler matching the denoiser's training noise schedule."""
        return cls(autoencoder, denoiser, _make_scheduler(scheduler, denoiser.config.num_train_timesteps))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> MoleculeDiffusionPipeline:
        """Load from a local pipeline folder (``model_index.json`` + component folders); never downloads.

        Raises :class:`~workbench.errors.CheckpointError` naming the folder when it is not a pipeline.
        """
        folder = Path(pretrained_model_name_or_path)
        if not folder.is_dir():
            raise CheckpointError(folder, "is not a folder; pass the folder written by make train-diffusion")
        if not (folder / "model_index.json").exists():
            raise CheckpointError(folder, "has no model_index.json; it is not a saved MoleculeDiffusionPipeline")
        kwargs.setdefault("local_files_only", True)
        kwargs.setdefault("low_cpu_mem_usage", False)  # True needs the optional accelerate package
        try:
            pipe = super().from_pretrained(str(folder), **kwargs)
        except Exception as exc:
            raise CheckpointError(folder, f"could not be loaded: {exc}") from exc
        pipe.autoencoder.eval()
        pipe.denoiser.eval()
        return pipe

    def use_scheduler(self, name: str, **config: Any) -> MoleculeDiffusionPipeline:
        """Swap the scheduler (``"dpm-solver"``, ``"ddim"`` or ``"ddpm"``), keeping the noise schedule.

        >>> pipe.use_scheduler("ddim")  # doctest: +SKIP

        ``config`` overrides the scheduler settings (for example ``solver_order=3``).
        """
        self.scheduler = _make_scheduler(name, self.denoiser.config.num_train_timesteps, **config)
        return self

    # ------------------------------------------------------------------ input checks
    def condition_from_targets(self, targets: Mapping[str, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised condition vector and mask (1, n_props) for ``targets``; checks names, values and ranges."""
        names = self.denoiser.property_names
        values = torch.zeros(1, len(names))
        mask = torch.zeros(1, len(names), dtype=torch.bool)
        if targets is None:
            return values, mask
        if not isinstance(targets, Mapping):
            raise TypeError(f"targets must be a mapping of property name to value, got {type(targets).__name__}")
        config = self.denoiser.config
        for name, value in targets.items():
            if name not in names:
                raise SpecError(name, f"unknown target property; the model can target: {', '.join(names)}")
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise SpecError(name, f"target must be a number, got {value!r}") from None
            if not math.isfinite(value):
                raise SpecError(name, f"target must be a finite number, got {value}")
            j = names.index(name)
            if config.property_min is not None and config.property_max is not None:
                lo, hi = config.property_min[j], config.property_max[j]
                margin = _RANGE_MARGIN * (hi - lo)
                if value < lo - margin or value > hi + margin:
                    warnings.warn(
                        f"target {name}={value:g} is far outside the training range [{lo:g}, {hi:g}]; "
                        "expect poor accuracy",
                        stacklevel=3,
                    )
            values[0, j] = value
            mask[0, j] = True
        return self.denoiser.normalise_properties(values).masked_fill(~mask, 0.0), mask

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        n: int = 64,
        targets: Mapping[str, float] | None = None,
        guidance: GuidanceSchedule | None = None,
        num_inference_steps: int = 25,
        seed: int = 0,
        rules: RuleSet | None = None,
        retries: int = DECODE_RETRIES,
        workers: int = 1,
    ) -> SamplingResult:
        """Run the reverse diffusion and decode; keeps invalid decodes (see :attr:`SamplingResult.failures`).

        ``rules`` is the validation rule set (default :data:`~diffusion.autoencoder.DECISIVE_RULES`:
        the same pass/fail verdict as the default rules, without the slow warning-only alerts).
        A sample whose decode fails validation is decoded again from up to ``retries`` nearby latents
        (:meth:`~diffusion.autoencoder.SelfiesVAE.decode_molecules`; ``DecodedMolecule.attempts``
        says how many it took, so first-try validity stays measurable; ``retries=0`` turns it off).

        ``workers`` > 1 splits the samples into that many contiguous parts, each denoised, decoded and
        validated in its own forked process (Linux; one torch thread each): RDKit and SELFIES decoding
        are single-threaded Python, so this is how a batch uses several cores. The initial noise is drawn
        for all ``n`` samples from ``seed`` first, so with a deterministic scheduler (DPM-Solver++,
        DDIM) the molecules are the same for any ``workers``.
        """
        return self._sample(n, targets, guidance, num_inference_steps, seed, rules, retries, workers, ())

    def _sample(
        self,
        n: int,
        targets: Mapping[str, float] | None,
        guidance: GuidanceSchedule | None,
        num_inference_steps: int,
        seed: int,
        rules: RuleSet | None,
        retries: int,
        workers: int,
        properties: tuple[str, ...],
    ) -> SamplingResult:
        """:meth:`sample`; ``properties`` are computed (and cached on each Molecule) where the decoding ran."""
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer number of molecules, got {n!r}")
        if not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers <= 0:
            raise ValueError(f"workers must be a positive integer number of processes, got {workers!r}")
        guidance = DEFAULT_GUIDANCE if guidance is None else guidance
        if not isinstance(guidance, GuidanceSchedule):
            raise TypeError(f"guidance must be a diffusion.guidance schedule such as C2FG(4.0, 3.0), got {guidance!r}")
        condition, mask = self.condition_from_targets(targets)
        generator = torch.Generator().manual_seed(int(seed))
        latents = torch.randn(n, self.denoiser.config.latent_dim, generator=generator)
        latents = latents * self.scheduler.init_noise_sigma
        parts = _split(n, workers)
        task = _Task(condition, mask, guidance, num_inference_steps, int(seed), rules, retries, properties)
        if len(parts) == 1:
            chunks = [self._run_part(task, latents, range(n), generator)]
        else:
            chunks = _run_forked(self, task, [(latents[p.start : p.stop], p) for p in parts])
        return SamplingResult(
            decoded=[d for chunk in chunks for d in chunk.decoded],
            latents=torch.cat([chunk.latents for chunk in chunks]),
            targets={k: float(v) for k, v in (targets or {}).items()},
            guidance=guidance,
            seed=int(seed),
            num_inference_steps=num_inference_steps,
            forward_passes=chunks[0].forward_passes,
            weights=chunks[0].weights,
        )

    @torch.no_grad()
    def _run_part(self, task: _Task, latents: torch.Tensor, indices: range, generator: torch.Generator | None) -> _Part:
        """Denoise ``latents`` (samples ``indices`` of the batch), decode and validate them."""
        n = len(indices)
        conditional = bool(task.mask.any())
        device = self.denoiser.device
        latents = latents.to(device)
        condition, mask = task.condition.expand(n, -1).to(device), task.mask.expand(n, -1).to(device)
        # cond and uncond rows in one batch: [x; x] with masks [targets; nothing]
        batched_condition = torch.cat([condition, condition])
        batched_mask = torch.cat([mask, torch.zeros_like(mask)])
        if generator is None:  # a part in a worker: its own stream for stochastic schedulers (DDPM), kept apart
            # from the per-sample decode-retry streams (seeded seed * 1_000_003 + index in decode_molecules)
            state = np.random.SeedSequence([task.seed, _PART_STREAM, indices.start]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(state))
        takes_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        step_kwargs = {"generator": generator} if takes_generator else {}
        num_train_timesteps = self.scheduler.config.num_train_timesteps
        self.scheduler.set_timesteps(task.num_inference_steps)
        forward_passes, weights = 0, []
        for t in self.scheduler.timesteps:
            model_input = self.scheduler.scale_model_input(latents, t)
            if conditional:
                timestep = t.expand(2 * n).to(device)
                eps_c, eps_u = self.denoiser(
                    torch.cat([model_input, model_input]), timestep, batched_condition, batched_mask
                ).sample.chunk(2)
                w = task.guidance(normalised_time(float(t), num_train_timesteps))
                eps = eps_c + w * (eps_c - eps_u)
                weights.append(w)
            else:
                eps = self.denoiser(model_input, t.expand(n).to(device), condition, mask).sample
            forward_passes += 1
            latents = self.scheduler.step(eps, t, latents, **step_kwargs).prev_sample
        decoded = self.autoencoder.decode_molecules(
            latents, normalised=True, rules=task.rules, retries=task.retries, seed=task.seed, indices=indices
        )
        for item in decoded:
            if item.molecule is not None:
                for name in task.properties:
                    item.molecule.prop(name)  # cached on the Molecule, which carries its cache when pickled
        return _Part(decoded, latents.cpu(), forward_passes, weights)

    def __call__(
        self,
        n: int = 64,
        targets: Mapping[str, float] | None = None,
        guidance: GuidanceSchedule | None = None,
        num_inference_steps: int = 25,
        seed: int = 0,
        spec: DesignSpec | None = None,
        rules: RuleSet | None = None,
        workers: int = 1,
    ) -> MoleculeSet:
        """Sample ``n`` molecules aimed at ``targets`` and return the valid, distinct ones as a MoleculeSet.

        Each Molecule's ``meta`` holds ``achieved`` (the targeted properties, computed by RDKit),
        ``targets``, ``validation`` (its ValidationReport), ``seed``, ``sample_index`` and
        ``guidance``. Decodes that fail validation are left out (``sample`` keeps them). With ``spec``
        only molecules satisfying the DesignSpec are returned. Without targets sampling is
        unconditional and ``guidance`` has no effect. ``rules`` is the validation rule set of
        :meth:`sample`; pass ``workbench.chem.DEFAULT_RULES`` to get the structural-alert warnings in
        each report too (about 30x slower). ``workers`` > 1 uses that many processes (see :meth:`sample`);
        the achieved properties are computed there too.
        """
        if spec is not None and not isinstance(spec, DesignSpec):
            raise TypeError(f"spec must be a workbench.chem.DesignSpec, got {type(spec).__name__}")
        names = tuple(targets or ())
        result = self._sample(n, targets, guidance, num_inference_steps, seed, rules, DECODE_RETRIES, workers, names)
        out = MoleculeSet(name=f"diffusion seed={seed} targets={result.targets}")
        for i, item in enumerate(result.decoded):
            if item.molecule is None:
                continue
            achieved = {name: item.molecule.prop(name) for name in result.targets}
            molecule = item.molecule.with_meta(
                achieved=achieved,
                targets=dict(result.targets),
                validation=item.validation,
                seed=result.seed,
                sample_index=i,
                guidance=repr(result.guidance),
            )
            if spec is not None and not spec.check(molecule).ok:
                continue
            out.add(molecule)
        return out


@dataclass(frozen=True)
class _Task:
    """What every part of one sampling run shares."""

    condition: torch.Tensor
    mask: torch.Tensor
    guidance: GuidanceSchedule
    num_inference_steps: int
    seed: int
    rules: RuleSet | None
    retries: int
    properties: tuple[str, ...]


@dataclass
class _Part:
    decoded: list[DecodedMolecule]
    latents: torch.Tensor
    forward_passes: int
    weights: list[float]


_MIN_PART = 32  # fewer samples per process than this are not worth a fork
_PART_STREAM = 1  # tag of the scheduler-noise streams of forked parts


def _split(n: int, workers: int) -> list[range]:
    """Contiguous parts of ``range(n)``, one per worker (fewer when ``n`` is small, one without fork)."""
    return contiguous_parts(n, workers, min_part=_MIN_PART, what="sampling", stacklevel=5)


def _sample_forked(state: tuple[MoleculeDiffusionPipeline, _Task], args: tuple[torch.Tensor, range]) -> _Part:
    torch.set_num_threads(1)
    pipe, task = state
    latents, indices = args
    return pipe._run_part(task, latents, indices, None)


def _run_forked(pipe: MoleculeDiffusionPipeline, task: _Task, parts: list[tuple[torch.Tensor, range]]) -> list[_Part]:
    """Run the parts in forked processes that inherit the pipeline (no copy of the weights is sent)."""
    return fork_map(_sample_forked, (pipe, task), parts, what="sampling worker")


def _make_scheduler(name: str, num_train_timesteps: int, **config: Any) -> SchedulerMixin:
    """A diffusers scheduler with the squared-cosine noise schedule the denoiser is trained on."""
    try:
        cls = SCHEDULERS[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}") from None
    settings: dict[str, Any] = {
        "num_train_timesteps": num_train_timesteps,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "epsilon",
    }
    if cls is DPMSolverMultistepScheduler:
        # The squared-cosine schedule has alpha_bar ~ 0 at the last training step, where DPM-Solver's
        # data prediction x0 = (x - sigma * eps) / alpha blows up; start where alpha is ~0.06 instead
        # (see the module docstring).
        settings["algorithm_type"] = "dpmsolver++"
        settings["solver_order"] = 2
        settings["lambda_min_clipped"] = DPM_LAMBDA_MIN
    else:
        settings["clip_sample"] = False  # latents are unit-scale Gaussians, not images in [-1, 1]
    settings.update(config)
    return cls(**settings)
