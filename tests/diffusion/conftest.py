"""Tiny, really-built diffusion models for fast tests (untrained or trained for a few steps)."""

from __future__ import annotations

import pytest
import torch

from diffusion.autoencoder import SelfiesVAE, SelfiesVocabulary
from diffusion.denoiser import LatentDenoiser
from diffusion.pipeline import MoleculeDiffusionPipeline


@pytest.fixture(scope="session")
def tiny_vae(moses_sample: list[str]) -> SelfiesVAE:
    torch.manual_seed(0)
    vocab = SelfiesVocabulary.from_smiles(moses_sample)
    return SelfiesVAE(tokens=vocab.tokens[3:], max_len=60, embed_dim=16, hidden_dim=32, latent_dim=8).eval()


@pytest.fixture(scope="session")
def tiny_denoiser() -> LatentDenoiser:
    torch.manual_seed(0)
    net = LatentDenoiser(
        latent_dim=8,
        hidden_dim=32,
        n_blocks=1,
        property_mean=[0.6, 2.5, 320.0, 60.0, 2.8, 1.0, 4.0, 3.0],
        property_std=[0.15, 1.0, 40.0, 18.0, 0.6, 0.8, 1.3, 0.9],
        property_min=[0.2, -2.0, 250.0, 10.0, 1.2, 0.0, 0.0, 1.0],
        property_max=[0.95, 5.0, 350.0, 130.0, 6.0, 4.0, 9.0, 6.0],
    )
    # The output layer starts at zero; give it weights so cond and uncond predictions differ.
    torch.nn.init.normal_(net.output.weight, std=0.05)
    for block in net.blocks:
        torch.nn.init.normal_(block.mlp[-1].weight, std=0.05)
    return net.eval()


@pytest.fixture()
def tiny_pipeline(tiny_vae: SelfiesVAE, tiny_denoiser: LatentDenoiser) -> MoleculeDiffusionPipeline:
    return MoleculeDiffusionPipeline.from_components(tiny_vae, tiny_denoiser)
