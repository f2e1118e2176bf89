"""Proposers a job can name, one small function each, found by name in :data:`PROPOSERS`.

Each takes the proposer's settings, the job's DesignSpec and a seed, and returns a list of
``(smiles, source, meta)`` tuples. An engine that is not installed or has no shipped checkpoint is
reported with the list of available proposers, never replaced by something else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from workbench.chem.spec import DesignSpec
from workbench.errors import JobFileError

__all__ = ["PROPOSERS", "propose", "available_proposers"]

Proposal = tuple[str, str, dict[str, Any]]


def _library(settings: Any, spec: DesignSpec, seed: int) -> list[Proposal]:
    """Molecules from a bundled corpus (a seeded uniform sample) or a SMILES/SDF file (first n records)."""
    source = settings.source
    if os.path.exists(source):
        from workbench.chem import io

        result = io.read(source)
        return [(m.smiles, "library", {"file": source, "name": m.name}) for m in list(result)[: settings.n]]
    from workbench.data import CORPORA, load_corpus

    if source not in CORPORA:
        raise JobFileError(
            f"proposer 'library': source {source!r} is neither a file nor a corpus; corpora: {', '.join(CORPORA)}"
        )
    smiles = load_corpus(source, limit=settings.n, seed=seed)
    return [(s, "library", {"corpus": source}) for s in smiles]


GUIDANCE_TYPES = {
    "constant": "Constant",
    "linear": "Linear",
    "cosine": "Cosine",
    "interval": "Interval",
    "c2fg": "C2FG",
}


def guidance_from_config(config: dict[str, Any] | None):
    """A guidance schedule from a job file mapping such as ``{type: c2fg, w0: 4.0, lam: 3.0}``."""
    from diffusion import guidance

    if not config or config.get("type", "none") == "none":
        return None
    params = {k: v for k, v in config.items() if k != "type"}
    kind = str(config.get("type", "")).lower()
    if kind not in GUIDANCE_TYPES:
        raise JobFileError(
            f"proposers.diffusion.guidance: unknown type {kind!r}; choose none, {', '.join(GUIDANCE_TYPES)}"
        )
    try:
        return getattr(guidance, GUIDANCE_TYPES[kind])(**params)
    except (TypeError, ValueError) as exc:
        raise JobFileError(f"proposers.diffusion.guidance ({kind}): {exc}") from None


def default_diffusion_checkpoint() -> str:
    import diffusion

    return os.path.join(os.path.dirname(diffusion.__file__), "checkpoints")


def _diffusion(settings: Any, spec: DesignSpec, seed: int) -> list[Proposal]:
    """Property-targeted samples from the shipped diffusion pipeline (or ``checkpoint``)."""
    try:
        from diffusion.pipeline import MoleculeDiffusionPipeline
    except ImportError as exc:
        raise JobFileError(f"proposer 'diffusion' is not available in this installation ({exc})") from None
    pipe = MoleculeDiffusionPipeline.from_pretrained(settings.checkpoint or default_diffusion_checkpoint())
    mols = pipe(
        n=settings.n,
        targets=settings.targets or None,
        guidance=guidance_from_config(settings.guidance),
        num_inference_steps=settings.steps,
        seed=seed,
    )
    return [(m.smiles, "diffusion", {"targets": settings.targets, "guidance": settings.guidance}) for m in mols]


def _reasoning(settings: Any, spec: DesignSpec, seed: int) -> list[Proposal]:
    try:
        from reasoning import Proposer  # type: ignore[attr-defined]
    except ImportError:
        raise JobFileError(
            "proposer 'reasoning' is not available: the reasoning engine ships no model yet; "
            f"available proposers: {', '.join(available_proposers())}"
        ) from None
    proposals = Proposer.default(backend=settings.backend).propose(spec, settings.n, seed=seed)
    return [(p.molecule.smiles, "reasoning", {"trace": p.trace}) for p in proposals if p.molecule is not None]


PROPOSERS: dict[str, Callable[[Any, DesignSpec, int], list[Proposal]]] = {
    "library": _library,
    "diffusion": _diffusion,
    "reasoning": _reasoning,
}


def available_proposers() -> list[str]:
    """Proposer names whose engine can actually run here."""
    names = ["library"]
    try:
        import diffusion.pipeline  # noqa: F401

        names.append("diffusion")
    except ImportError:
        pass
    try:
        from reasoning import Proposer  # type: ignore[attr-defined]  # noqa: F401

        names.append("reasoning")
    except ImportError:
        pass
    return names


def propose(settings: Any, spec: DesignSpec, seed: int) -> list[Proposal]:
    try:
        func = PROPOSERS[settings.type]
    except KeyError:
        raise JobFileError(
            f"unknown proposer {settings.type!r}; available: {', '.join(available_proposers())}"
        ) from None
    return func(settings, spec, seed)
