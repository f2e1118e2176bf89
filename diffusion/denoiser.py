"""The property-conditioned noise predictor that runs in the autoencoder's latent space.

>>> import torch
>>> from diffusion.denoiser import LatentDenoiser
>>> net = LatentDenoiser(latent_dim=8, hidden_dim=32, n_blocks=1)
>>> x, t = torch.zeros(2, 8), torch.tensor([10, 500])
>>> cond, mask = torch.zeros(2, 8), torch.tensor([[True] + [False] * 7] * 2)  # target only QED
>>> net(x, t, cond, mask).sample.shape
torch.Size([2, 8])

The condition is a vector of the eight :data:`CONDITION_PROPERTIES`, each normalised with the
training-set mean/std stored in the config, plus a boolean mask saying which ones are targeted.
Where the mask is False the network sees a learned "null" value instead, so an all-False mask is
the unconditional model and any subset of properties can be targeted. Training drops the whole
condition with probability ``p_uncond`` (classifier-free guidance) and single properties at random.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from rdkit import Chem
from torch import nn

from workbench.chem.properties import compute

__all__ = ["CONDITION_PROPERTIES", "LatentDenoiser", "DenoiserOutput", "property_matrix", "timestep_embedding"]

CONDITION_PROPERTIES: tuple[str, ...] = ("qed", "clogp", "mw", "tpsa", "sa", "hbd", "hba", "rings")
"""The properties the denoiser can be conditioned on, in the order of the condition vector."""


def property_matrix(mols: Sequence[Chem.Mol | None], names: Sequence[str] = CONDITION_PROPERTIES) -> np.ndarray:
    """(n, len(names)) float array of RDKit properties; NaN where a molecule is None or a property fails.

    >>> property_matrix([Chem.MolFromSmiles("CCO")], ["mw", "hbd"]).round(2).tolist()
    [[46.07, 1.0]]
    """
    out = np.full((len(mols), len(names)), np.nan)
    for i, mol in enumerate(mols):
        if mol is None:
            continue
        for j, name in enumerate(names):
            with contextlib.suppress(Exception):  # a failed descriptor is a missing value, not a crash
                out[i, j] = float(compute(name, mol))
    return out


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding (batch, dim) of integer or float timesteps (batch,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class DenoiserOutput(BaseOutput):
    """``sample``: the predicted noise epsilon, shaped like the input latents."""

    sample: torch.Tensor


class _ResidualBlock(nn.Module):
    """LayerNorm -> FiLM(scale, shift from the time+condition embedding) -> MLP, added back."""

    def __init__(self, hidden_dim: int, embed_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim, elementwise_affine=False)
        self.film = nn.Linear(embed_dim, 2 * hidden_dim)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_dim, 2 * hidden_dim), nn.SiLU(), nn.Linear(2 * hidden_dim, hidden_dim)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """``emb`` has one row per row of ``h``, or per distinct row when ``index`` maps rows to them."""
        film = self.film(emb)
        if index is not None:
            film = film[index]
        scale, shift = film.chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class LatentDenoiser(ModelMixin, ConfigMixin):
    """Residual MLP epsilon-predictor with sinusoidal timestep embedding and masked property conditioning.

    Every block is modulated (FiLM: per-channel scale and shift) by the sum of the timestep and
    condition embeddings, so the targets reach each layer, not just the input. ``embed_dim`` (default:
    ``hidden_dim``) is the width of that embedding; a narrower one keeps the checkpoint small.

    >>> net = LatentDenoiser(latent_dim=4, hidden_dim=16, n_blocks=1, property_mean=[0.5] * 8)
    >>> net.normalise_properties(torch.full((1, 8), 0.5)).abs().max().item()
    0.0
    """

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 48,
        hidden_dim: int = 512,
        n_blocks: int = 4,
        property_names: Sequence[str] = CONDITION_PROPERTIES,
        property_mean: Sequence[float] | None = None,
        property_std: Sequence[float] | None = None,
        property_min: Sequence[float] | None = None,
        property_max: Sequence[float] | None = None,
        num_train_timesteps: int = 1000,
        embed_dim: int | None = None,
    ):
        super().__init__()
        n_props = len(property_names)
        embed_dim = embed_dim or hidden_dim  # width of the time+condition embedding that drives FiLM
        self.time_embed = nn.Sequential(nn.Linear(128, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.null_condition = nn.Parameter(torch.zeros(n_props))
        self.cond_embed = nn.Sequential(nn.Linear(2 * n_props, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.input = nn.Linear(latent_dim, hidden_dim)
        self.blocks = nn.ModuleList([_ResidualBlock(hidden_dim, embed_dim) for _ in range(n_blocks)])
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.output = nn.Linear(hidden_dim, latent_dim)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        mean = property_mean if property_mean is not None else [0.0] * n_props
        std = property_std if property_std is not None else [1.0] * n_props
        self.register_buffer("_prop_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("_prop_std", torch.tensor(std, dtype=torch.float32), persistent=False)

    @property
    def property_names(self) -> list[str]:
        return list(self.config.property_names)

    def normalise_properties(self, values: torch.Tensor) -> torch.Tensor:
        """Raw property values (..., n_props) -> unit-scale condition values (NaN stays NaN)."""
        return (values - self._prop_mean) / self._prop_std

    def training_mask(
        self, n: int, p_uncond: float, p_keep_property: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Random condition mask for training (n, n_props).

        A row is all-False (unconditional) with probability ``p_uncond``; of the remaining rows half
        target every property and half a random subset (each kept with ``p_keep_property``).
        """
        n_props = len(self.config.property_names)
        subset = torch.rand(n, n_props, generator=generator) < p_keep_property
        full = torch.rand(n, 1, generator=generator) < 0.5
        mask = subset | full
        uncond = torch.rand(n, 1, generator=generator) < p_uncond
        return mask & ~uncond

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor
    ) -> DenoiserOutput:
        """Predict the noise in ``sample`` (batch, latent_dim) at ``timestep`` (batch,) or scalar.

        ``condition`` (batch, n_props) holds normalised targets; ``mask`` (batch, n_props, bool) says
        which of them apply. Non-finite condition values must be masked out.
        """
        if timestep.dim() == 0:
            timestep = timestep.expand(sample.shape[0])
        mask = mask.to(torch.bool)
        values = torch.where(mask, torch.nan_to_num(condition), self.null_condition.expand_as(condition))
        timestep = timestep.to(sample.device)
        # At sampling time every row shares the timestep and one of two conditions (cond / uncond):
        # embed and FiLM-project the distinct (t, condition) rows only, then gather (same result).
        key = torch.cat([timestep.float().unsqueeze(1), values, mask.float()], dim=-1)
        rows, inverse = key, None
        if not torch.is_grad_enabled() and key.shape[0] > 8:
            distinct, inv = torch.unique(key, dim=0, return_inverse=True)
            if distinct.shape[0] <= key.shape[0] // 4:
                rows, inverse = distinct, inv
        n_props = values.shape[1]
        emb = self.time_embed(timestep_embedding(rows[:, 0], 128))
        emb = nn.functional.silu(emb + self.cond_embed(rows[:, 1 : 1 + 2 * n_props]))
        h = self.input(sample)
        for block in self.blocks:
            h = block(h, emb, inverse)
        return DenoiserOutput(sample=self.output(self.out_norm(h)))
