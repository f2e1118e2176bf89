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


def _diffusion(settings: Any, spec: DesignSpec, seed: int) -> list[Proposal]:
    try:
        from diffusion.guidance import from_config as guidance_from_config
        from diffusion.pipeline import load_pipeline
    except ImportError as exc:
        raise JobFileError(f"proposer 'diffusion' is not available in this installation ({exc})") from None
    pipe = load_pipeline(settings.checkpoint)
    mols = pipe(
        n=settings.n,
        targets=settings.targets,
        guidance=guidance_from_config(settings.guidance),
        num_inference_steps=settings.steps,
        seed=seed,
    )
    return [(m.smiles, "diffusion", {"targets": settings.targets}) for m in mols]


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
