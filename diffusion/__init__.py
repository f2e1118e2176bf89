"""diffusion: property-targeted molecule sampling by latent diffusion on ``diffusers``, with C2FG guidance.

>>> from diffusion import MoleculeDiffusionPipeline, C2FG  # doctest: +SKIP
>>> pipe = MoleculeDiffusionPipeline.from_pretrained("diffusion/checkpoints")  # doctest: +SKIP
>>> pipe(n=64, targets={"qed": 0.9, "clogp": 2.5}, guidance=C2FG(4.0, 3.0), seed=0)  # doctest: +SKIP

Parts, one idea per module:

- :mod:`diffusion.autoencoder`: ``SelfiesVAE``, the SELFIES latent space (every latent decodes to a molecule);
- :mod:`diffusion.denoiser`: ``LatentDenoiser``, the property-conditioned noise predictor;
- :mod:`diffusion.guidance`: guidance weight schedules (``Constant``, ``Linear``, ``Cosine``,
  ``Interval``, ``C2FG``) and ``calibrate_lambda``;
- :mod:`diffusion.pipeline`: ``MoleculeDiffusionPipeline``, a ``diffusers.DiffusionPipeline``;
- :mod:`diffusion.train`: ``make train-diffusion``.

Names are imported lazily so ``import diffusion`` does not load torch until a model is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SelfiesVAE": "diffusion.autoencoder",
    "LatentDenoiser": "diffusion.denoiser",
    "CONDITION_PROPERTIES": "diffusion.denoiser",
    "GuidanceSchedule": "diffusion.guidance",
    "Constant": "diffusion.guidance",
    "Linear": "diffusion.guidance",
    "Cosine": "diffusion.guidance",
    "Interval": "diffusion.guidance",
    "C2FG": "diffusion.guidance",
    "calibrate_lambda": "diffusion.guidance",
    "MoleculeDiffusionPipeline": "diffusion.pipeline",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diffusion' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
