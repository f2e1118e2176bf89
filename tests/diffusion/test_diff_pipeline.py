"""The sampling pipeline end to end with tiny real models: output type, determinism, batched CFG, bad input."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from diffusion.guidance import C2FG, Constant
from diffusion.pipeline import MoleculeDiffusionPipeline
from workbench.chem import DesignSpec, MoleculeSet, ValidationReport
from workbench.errors import CheckpointError, SpecError


def test_pipeline_returns_a_moleculeset_with_meta(tiny_pipeline: MoleculeDiffusionPipeline):
    targets = {"qed": 0.7, "clogp": 2.5}
    mols = tiny_pipeline(n=12, targets=targets, guidance=C2FG(3.0, 2.0), num_inference_steps=5, seed=3)
    assert isinstance(mols, MoleculeSet)
    assert len(mols) >= 1
    for mol in mols:
        assert mol.meta["targets"] == targets
        assert set(mol.meta["achieved"]) == set(targets)
        assert mol.meta["achieved"]["qed"] == pytest.approx(mol.prop("qed"))
        assert isinstance(mol.meta["validation"], ValidationReport) and mol.meta["validation"].ok
        assert mol.meta["seed"] == 3


def test_sampling_is_deterministic_for_a_seed(tiny_pipeline: MoleculeDiffusionPipeline):
    kwargs = {"n": 8, "targets": {"mw": 300.0}, "guidance": C2FG(2.0, 3.0), "num_inference_steps": 4}
    a = tiny_pipeline.sample(seed=11, **kwargs)
    b = tiny_pipeline.sample(seed=11, **kwargs)
    c = tiny_pipeline.sample(seed=12, **kwargs)
    assert torch.equal(a.latents, b.latents)
    assert [d.smiles for d in a.decoded] == [d.smiles for d in b.decoded]
    assert not torch.equal(a.latents, c.latents)


def test_workers_give_the_same_molecules_as_one_process(tiny_pipeline: MoleculeDiffusionPipeline):
    """Forked workers each denoise and decode a contiguous part; the result does not depend on how many."""
    kwargs = {"n": 70, "targets": {"qed": 0.7, "mw": 300.0}, "num_inference_steps": 4, "seed": 5}
    one = tiny_pipeline.sample(**kwargs)
    two = tiny_pipeline.sample(workers=2, **kwargs)
    assert torch.equal(one.latents, two.latents)
    assert [d.smiles for d in one.decoded] == [d.smiles for d in two.decoded]
    assert [d.attempts for d in one.decoded] == [d.attempts for d in two.decoded]  # retries are per sample
    assert two.forward_passes == one.forward_passes and two.weights == one.weights
    mols = tiny_pipeline(workers=2, **kwargs)
    assert mols.smiles == tiny_pipeline(**kwargs).smiles
    for mol in mols:  # achieved properties were computed in the workers and came back in the cache
        assert {"qed", "mw"} <= set(mol._cache) and mol.meta["achieved"]["qed"] == mol.prop("qed")


def test_stochastic_scheduler_with_workers_is_deterministic_for_a_seed(tiny_pipeline: MoleculeDiffusionPipeline):
    tiny_pipeline.use_scheduler("ddpm")
    kwargs = {"n": 70, "targets": {"qed": 0.7}, "num_inference_steps": 4, "workers": 2}
    a, b = tiny_pipeline.sample(seed=5, **kwargs), tiny_pipeline.sample(seed=5, **kwargs)
    assert torch.equal(a.latents, b.latents)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_workers_must_be_a_positive_integer(tiny_pipeline: MoleculeDiffusionPipeline, workers):
    with pytest.raises(ValueError, match="workers must be"):
        tiny_pipeline.sample(n=4, targets={"qed": 0.5}, num_inference_steps=2, workers=workers)


def test_cfg_runs_cond_and_uncond_in_one_forward_per_step(tiny_pipeline: MoleculeDiffusionPipeline):
    batch_sizes: list[int] = []
    hook = tiny_pipeline.denoiser.register_forward_hook(lambda module, args, out: batch_sizes.append(len(args[0])))
    try:
        result = tiny_pipeline.sample(n=5, targets={"qed": 0.8}, guidance=Constant(2.0), num_inference_steps=6)
    finally:
        hook.remove()
    assert len(batch_sizes) == 6 == result.forward_passes
    assert batch_sizes == [10] * 6  # [cond; uncond] stacked in one batch


def test_guidance_weight_follows_the_schedule_in_forward_time(tiny_pipeline: MoleculeDiffusionPipeline):
    result = tiny_pipeline.sample(n=2, targets={"qed": 0.8}, guidance=C2FG(4.0, 3.0), num_inference_steps=10)
    # sampling runs from noise (t_norm near 1, weak) to data (t_norm near 0, strong)
    assert result.weights[0] < result.weights[-1]
    assert result.weights == sorted(result.weights)
    assert result.weights[-1] <= 4.0


def test_guidance_changes_the_samples(tiny_pipeline: MoleculeDiffusionPipeline):
    kwargs = {"n": 4, "targets": {"qed": 0.8}, "num_inference_steps": 4, "seed": 0}
    plain = tiny_pipeline.sample(guidance=Constant(0.0), **kwargs).latents
    guided = tiny_pipeline.sample(guidance=Constant(5.0), **kwargs).latents
    assert not torch.allclose(plain, guided)


def test_dpm_solver_is_the_default_and_starts_on_the_data_scale(tiny_pipeline: MoleculeDiffusionPipeline):
    from diffusers import DPMSolverMultistepScheduler

    from diffusion.pipeline import DPM_LAMBDA_MIN

    assert isinstance(tiny_pipeline.scheduler, DPMSolverMultistepScheduler)
    assert tiny_pipeline.scheduler.config.algorithm_type == "dpmsolver++"
    result = tiny_pipeline.sample(n=16, targets={"qed": 0.7}, num_inference_steps=25, seed=0)
    assert result.forward_passes == 25 and torch.isfinite(result.latents).all()
    # the first step is taken where log(alpha/sigma) has reached the clip, not at alpha ~ 0
    alphas = tiny_pipeline.scheduler.alphas_cumprod
    first = int(tiny_pipeline.scheduler.timesteps[0])
    assert 0.5 * torch.log(alphas[first] / (1 - alphas[first])) >= DPM_LAMBDA_MIN - 0.05


def test_decisive_rules_give_the_default_verdict(tiny_vae):
    from diffusion.autoencoder import DECISIVE_RULES
    from workbench.chem import validate

    assert "pains" not in DECISIVE_RULES and "valence" in DECISIVE_RULES and "elements" in DECISIVE_RULES
    decoded = tiny_vae.decode_molecules(torch.randn(12, 8, generator=torch.Generator().manual_seed(0)))
    for item in decoded:
        assert item.validation.ok == validate(item.smiles).ok
        assert (item.molecule is not None) == item.validation.ok


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm"])
def test_other_diffusers_schedulers(tiny_pipeline: MoleculeDiffusionPipeline, scheduler: str):
    tiny_pipeline.use_scheduler(scheduler)
    result = tiny_pipeline.sample(n=3, targets={"qed": 0.5}, num_inference_steps=3, seed=1)
    assert len(result.decoded) == 3
    assert type(tiny_pipeline.scheduler).__name__.lower().startswith(scheduler)


def test_spec_filters_the_output(tiny_pipeline: MoleculeDiffusionPipeline):
    spec = DesignSpec(properties={"mw": [0.0, 1.0]})
    assert len(tiny_pipeline(n=6, targets={"qed": 0.6}, num_inference_steps=3, spec=spec)) == 0


def test_unconditional_sampling_uses_one_half_batch(tiny_pipeline: MoleculeDiffusionPipeline):
    result = tiny_pipeline.sample(n=4, targets=None, num_inference_steps=3)
    assert result.weights == [] and len(result.decoded) == 4


# ------------------------------------------------------------------ bad input
def test_unknown_property_is_named(tiny_pipeline: MoleculeDiffusionPipeline):
    with pytest.raises(SpecError, match="logS") as info:
        tiny_pipeline(n=2, targets={"logS": -3.0}, num_inference_steps=2)
    assert info.value.field == "logS"
    assert "qed" in str(info.value)  # says what can be targeted


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "high"])
def test_non_numeric_targets_are_rejected(tiny_pipeline: MoleculeDiffusionPipeline, value):
    with pytest.raises(SpecError, match="qed"):
        tiny_pipeline(n=2, targets={"qed": value}, num_inference_steps=2)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_n_must_be_a_positive_integer(tiny_pipeline: MoleculeDiffusionPipeline, n):
    with pytest.raises(ValueError, match="n must be"):
        tiny_pipeline(n=n, targets={"qed": 0.5}, num_inference_steps=2)


def test_targets_far_outside_training_range_warn_with_the_range(tiny_pipeline: MoleculeDiffusionPipeline):
    with pytest.warns(UserWarning, match=r"mw=900.*\[250, 350\]"):
        tiny_pipeline.sample(n=2, targets={"mw": 900.0}, num_inference_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        tiny_pipeline.sample(n=2, targets={"mw": 300.0}, num_inference_steps=2)


def test_guidance_must_be_a_schedule(tiny_pipeline: MoleculeDiffusionPipeline):
    with pytest.raises(TypeError, match="C2FG"):
        tiny_pipeline(n=2, targets={"qed": 0.5}, guidance=4.0, num_inference_steps=2)


# ------------------------------------------------------------------ save / load
def test_save_and_load_a_local_folder(tiny_pipeline: MoleculeDiffusionPipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["autoencoder"] == ["diffusion.autoencoder", "SelfiesVAE"]
    assert (tmp_path / "pipe" / "denoiser" / "diffusion_pytorch_model.safetensors").exists()
    loaded = MoleculeDiffusionPipeline.from_pretrained(tmp_path / "pipe")
    kwargs = {"n": 4, "targets": {"tpsa": 60.0}, "num_inference_steps": 3, "seed": 5}
    assert torch.equal(loaded.sample(**kwargs).latents, tiny_pipeline.sample(**kwargs).latents)
    assert loaded.denoiser.config.property_min == tiny_pipeline.denoiser.config.property_min


def test_wrong_checkpoint_folder_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere"):
        MoleculeDiffusionPipeline.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty.*model_index.json"):
        MoleculeDiffusionPipeline.from_pretrained(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="broken"):
        MoleculeDiffusionPipeline.from_pretrained(broken)
