"""Training code on tiny models: the losses fall, stages save loadable checkpoints, logs and resume state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from safetensors.torch import load_file

from diffusion.autoencoder import SelfiesVAE, SelfiesVocabulary
from diffusion.denoiser import CONDITION_PROPERTIES, LatentDenoiser, property_matrix
from diffusion.train import (
    AutoencoderTrainingConfig,
    DenoiserTrainingConfig,
    _ExponentialAverage,
    _length_bucketed_order,
    _load_resume,
    _save_resume,
    compute_training_properties,
    train_autoencoder,
    train_denoiser,
)
from workbench.errors import CheckpointError


def test_vocabulary_round_trips_and_rejects_too_long(moses_sample: list[str]):
    vocab = SelfiesVocabulary.from_smiles(moses_sample[:50])
    ids = vocab.encode("CC(=O)Nc1ccccc1", max_len=40)
    assert len(ids) == 40 and ids[-1] == vocab.pad_id
    assert vocab.decode(ids) == "CC(=O)NC1=CC=CC=C1"
    assert vocab.encode("C" * 80, max_len=40) is None


def _reconstruction_losses(vae, smiles: list[str], *, lr: float, steps: int, beta: float) -> list[float]:
    """Train ``vae`` on ``smiles`` (one batch) with Adam; the reconstruction loss at every step."""
    batch, _ = vae.tokenize(smiles)
    batch = batch[:, : int((batch != vae.vocab.pad_id).sum(1).max())]
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        terms = vae.loss(batch, beta=beta)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(float(terms["reconstruction"].detach()))
    return losses


def test_autoencoder_loss_falls(moses_sample: list[str]):
    torch.manual_seed(0)
    vocab = SelfiesVocabulary.from_smiles(moses_sample)
    vae = SelfiesVAE(tokens=vocab.tokens[3:], max_len=60, embed_dim=16, hidden_dim=48, latent_dim=8)
    losses = _reconstruction_losses(vae, moses_sample[:64], lr=3e-3, steps=30, beta=0.01)
    assert losses[-1] < 0.7 * losses[0]


def test_greedy_decode_pads_after_the_end_token_and_never_ends_early(moses_sample: list[str]):
    vocab = SelfiesVocabulary.from_smiles(moses_sample[:200])
    vae = SelfiesVAE(tokens=vocab.tokens[3:], max_len=30, embed_dim=8, hidden_dim=32, latent_dim=4)
    torch.nn.init.normal_(vae.to_logits.bias, std=3.0)  # random, confident per-position predictions
    ids = vae.greedy_decode(torch.randn(64, 4, generator=torch.Generator().manual_seed(1)), min_tokens=4)
    assert ids.shape == (64, 30)
    assert not (ids[:, :4] == vae.vocab.eos_id).any()
    assert not (ids == vae.vocab.bos_id).any()
    for row in ids.tolist():
        if vae.vocab.eos_id in row:
            end = row.index(vae.vocab.eos_id)
            assert all(i == vae.vocab.pad_id for i in row[end + 1 :])
            assert vae.vocab.pad_id not in row[:end]


@pytest.mark.parametrize("encoder_type", ["mlp", "gru"])
def test_gru_autoencoder_loss_falls(moses_sample: list[str], encoder_type: str):
    torch.manual_seed(0)
    vocab = SelfiesVocabulary.from_smiles(moses_sample)
    vae = SelfiesVAE(tokens=vocab.tokens[3:], max_len=60, embed_dim=8, hidden_dim=32, latent_dim=4,
                     decoder_type="gru", gru_dim=32, encoder_type=encoder_type)  # fmt: skip
    losses = _reconstruction_losses(vae, moses_sample[:64], lr=1e-2, steps=25, beta=0.05)
    assert losses[-1] < 0.7 * losses[0]


def test_gru_encoder_ignores_padding(moses_sample: list[str]):
    """The bidirectional encoder reads each molecule's own tokens: batch trimming and neighbours do not matter."""
    torch.manual_seed(0)
    vocab = SelfiesVocabulary.from_smiles(moses_sample[:200])
    vae = SelfiesVAE(tokens=vocab.tokens[3:], max_len=60, embed_dim=8, hidden_dim=32, latent_dim=4,
                     decoder_type="gru", gru_dim=16, encoder_type="gru").eval()  # fmt: skip
    ids, _ = vae.tokenize(moses_sample[:6])
    with torch.no_grad():
        full, _ = vae.posterior(ids)
        trimmed, _ = vae.posterior(ids[:, : int((ids != vae.vocab.pad_id).sum(1).max())])
        alone = torch.cat([vae.posterior(ids[i : i + 1])[0] for i in range(len(ids))])
    torch.testing.assert_close(full, trimmed)
    torch.testing.assert_close(full, alone)
    with pytest.raises(ValueError, match="encoder_type"):
        SelfiesVAE(tokens=vocab.tokens[3:], encoder_type="lstm")


def test_gru_greedy_decode_pads_after_the_end_token_and_is_teacher_forcing_consistent(moses_sample: list[str]):
    torch.manual_seed(0)
    vocab = SelfiesVocabulary.from_smiles(moses_sample[:200])
    vae = SelfiesVAE(tokens=vocab.tokens[3:], max_len=30, embed_dim=8, hidden_dim=32, latent_dim=4,
                     decoder_type="gru", gru_dim=16).eval()  # fmt: skip
    torch.nn.init.normal_(vae.to_logits.bias, std=3.0)
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    ids = vae.greedy_decode(z, min_tokens=4)
    assert ids.shape == (16, 30)
    assert not (ids[:, :4] == vae.vocab.eos_id).any() and not (ids == vae.vocab.bos_id).any()
    for row in ids.tolist():
        if vae.vocab.eos_id in row:
            assert all(i == vae.vocab.pad_id for i in row[row.index(vae.vocab.eos_id) + 1 :])
    # the greedy tokens are the argmax of the teacher-forced logits fed those same tokens
    with torch.no_grad():
        logits = vae.logits(z, ids)
    logits[:, :, [vae.vocab.pad_id, vae.vocab.bos_id]] = -torch.inf
    logits[:, :4, vae.vocab.eos_id] = -torch.inf
    assert torch.equal(logits[:, :5].argmax(-1), ids[:, :5])
    with pytest.raises(ValueError, match="token_ids"):
        vae.logits(z)
    with pytest.raises(ValueError, match="decoder_type"):
        SelfiesVAE(tokens=["[C]"], decoder_type="lstm")


def test_length_bucketed_order_is_a_permutation_with_similar_lengths_per_batch():
    lengths = torch.randint(5, 60, (1000,), generator=torch.Generator().manual_seed(0))
    order = _length_bucketed_order(lengths, batch_size=10, seed=3, bucket=20)
    assert sorted(order.tolist()) == list(range(1000))
    spread = (lengths[order].view(-1, 10).max(1).values - lengths[order].view(-1, 10).min(1).values).float().mean()
    assert spread < 5  # random batches of 10 would spread ~40
    assert torch.equal(order, _length_bucketed_order(lengths, batch_size=10, seed=3, bucket=20))


def test_tokenize_accepts_known_selfies(moses_sample: list[str]):
    import selfies as sf

    vocab = SelfiesVocabulary.from_smiles(moses_sample[:50])
    vae = SelfiesVAE(tokens=vocab.tokens[3:], max_len=60, embed_dim=8, hidden_dim=16, latent_dim=4)
    smiles = moses_sample[:10]
    direct, kept = vae.tokenize(smiles)
    cached, kept_cached = vae.tokenize(smiles, [sf.encoder(s) for s in smiles])
    assert torch.equal(direct, cached) and kept == kept_cached
    assert vae.tokenize(["CCO"], [None])[1] == []


def test_denoiser_loss_falls():
    torch.manual_seed(0)
    net = LatentDenoiser(latent_dim=4, hidden_dim=32, n_blocks=2)
    alphas = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").alphas_cumprod
    props = torch.randn(256, 8)
    x0 = props[:, :4] * 0.8 + 0.2 * torch.randn(256, 4)  # latents that depend on the condition
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        t = torch.randint(0, 1000, (256,))
        noise = torch.randn_like(x0)
        a = alphas[t].unsqueeze(1)
        mask = net.training_mask(256, 0.15, 0.5)
        loss = torch.nn.functional.mse_loss(net(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, props, mask).sample, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10


def test_training_mask_drops_conditions():
    net = LatentDenoiser(latent_dim=4, hidden_dim=16, n_blocks=1)
    mask = net.training_mask(20_000, p_uncond=0.15, p_keep_property=0.5, generator=torch.Generator().manual_seed(0))
    unconditional = (~mask.any(1)).float().mean().item()
    full = mask.all(1).float().mean().item()
    assert 0.14 < unconditional < 0.17
    assert 0.4 < full < 0.5


def test_property_matrix_matches_the_chemistry_core():
    from rdkit import Chem

    from workbench.chem import Molecule

    matrix = property_matrix([Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"), None])
    mol = Molecule("CC(=O)Nc1ccc(O)cc1")
    assert matrix[0].tolist() == pytest.approx([float(mol.prop(p)) for p in CONDITION_PROPERTIES])
    assert all(v != v for v in matrix[1])  # NaN for a missing molecule


def test_stages_write_checkpoints_logs_and_skip_when_finished(tmp_path):
    ae_cfg = AutoencoderTrainingConfig(
        n_train=300, n_test=20, hidden_dim=32, embed_dim=16, latent_dim=8, epochs=1, batch_size=100,
        log_every=1, save_every=2, beta_warmup_steps=2, n_prior_samples=10,
    )  # fmt: skip
    vae = train_autoencoder(tmp_path / "autoencoder", ae_cfg)
    log = [json.loads(line) for line in (tmp_path / "autoencoder" / "train_log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "reconstruction" and r["split"] == "moses-test" for r in log)
    assert any(r.get("event") == "prior_samples" for r in log)
    assert not (tmp_path / "autoencoder" / "resume").exists()
    assert len(vae.config.latent_std) == 8
    reloaded = train_autoencoder(tmp_path / "autoencoder", ae_cfg)  # finished: loads, does not retrain
    assert torch.equal(reloaded.to_logits.weight, vae.to_logits.weight)

    dn_cfg = DenoiserTrainingConfig(
        n_train=200,
        n_heldout=20,
        hidden_dim=32,
        n_blocks=1,
        epochs=2,
        batch_size=100,
        log_every=1,
        save_every=2,
        labels="decoded",
    )
    denoiser = train_denoiser(tmp_path / "denoiser", vae, dn_cfg)
    assert len(denoiser.config.property_mean) == len(CONDITION_PROPERTIES)
    assert denoiser.config.property_min[0] <= denoiser.config.property_max[0]
    log = [json.loads(line) for line in (tmp_path / "denoiser" / "train_log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "heldout" for r in log)
    # the conditioning labels are the properties of what each training latent decodes to
    assert any(r.get("event") == "decoded_labels" for r in log)
    data = load_file(tmp_path / "denoiser" / "latents.safetensors")
    decoded = vae.decode_molecules(data["latents"][:6], normalised=True)
    expected = property_matrix([d.molecule.graph if d.molecule is not None else None for d in decoded])
    np.testing.assert_allclose(data["properties"][:6].numpy(), expected, rtol=1e-5, equal_nan=True)

    changed = AutoencoderTrainingConfig(**{**ae_cfg.__dict__, "hidden_dim": 64})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "training_config.json").write_text(json.dumps(ae_cfg.__dict__))
    with pytest.raises(CheckpointError, match="different recipe"):
        train_autoencoder(tmp_path / "other", changed)


def test_resume_state_round_trips(tmp_path):
    net = LatentDenoiser(latent_dim=4, hidden_dim=16, n_blocks=1)
    optimizer = torch.optim.Adam(net.parameters())
    net(
        torch.zeros(2, 4), torch.tensor([1, 2]), torch.zeros(2, 8), torch.ones(2, 8, dtype=torch.bool)
    ).sample.sum().backward()
    optimizer.step()
    _save_resume(tmp_path, net, optimizer, step=7)
    fresh = LatentDenoiser(latent_dim=4, hidden_dim=16, n_blocks=1)
    fresh_optimizer = torch.optim.Adam(fresh.parameters())
    assert _load_resume(tmp_path, fresh, fresh_optimizer) == 7
    assert torch.equal(fresh.input.weight, net.input.weight)
    assert _load_resume(tmp_path / "none", fresh, fresh_optimizer) == 0


def test_weight_average_follows_the_model_and_resumes(tmp_path):
    net = LatentDenoiser(latent_dim=4, hidden_dim=16, n_blocks=1, embed_dim=8)
    ema = _ExponentialAverage(net, decay=0.9, path=tmp_path / "ema.safetensors")
    start = net.input.weight.detach().clone()
    with torch.no_grad():
        net.input.weight.add_(1.0)
    for step in range(200):
        ema.update(net, step)
    assert torch.allclose(ema.shadow["input.weight"], start + 1.0, atol=1e-4)  # converged on the new weights
    ema.save()
    resumed = _ExponentialAverage(LatentDenoiser(latent_dim=4, hidden_dim=16, n_blocks=1, embed_dim=8), 0.9,
                                  tmp_path / "ema.safetensors")  # fmt: skip
    fresh = LatentDenoiser(latent_dim=4, hidden_dim=16, n_blocks=1, embed_dim=8)
    resumed.copy_to(fresh)
    assert torch.equal(fresh.input.weight, ema.shadow["input.weight"])
    assert fresh.blocks[0].film.in_features == 8  # the narrower embedding drives FiLM


def test_training_properties_are_reused_from_the_cache(tmp_path, monkeypatch):
    import diffusion.train as train

    cfg = DenoiserTrainingConfig(n_train=30, n_heldout=5)
    smiles, props = compute_training_properties(tmp_path / "first", cfg, cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1

    def no_recompute(*args, **kwargs):
        raise AssertionError("properties were computed again")

    monkeypatch.setattr(train, "property_matrix", no_recompute)
    again, props_again = compute_training_properties(tmp_path / "second", cfg, cache=tmp_path / "cache")
    assert again == smiles and torch.equal(props_again, props)
    log = [json.loads(line) for line in (tmp_path / "second" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "properties" and "reused" in log[-1]


def test_property_head_learns_properties_from_the_latent(moses_sample: list[str]):
    """Trained jointly, the head's error falls; it reads raw units through the saved training-set stats."""
    torch.manual_seed(0)
    smiles = moses_sample[:64]
    vocab = SelfiesVocabulary.from_smiles(moses_sample)
    vae = SelfiesVAE(tokens=vocab.tokens[3:], max_len=60, embed_dim=8, hidden_dim=32, latent_dim=8,
                     decoder_type="gru", gru_dim=32, property_names=CONDITION_PROPERTIES)  # fmt: skip
    from rdkit import Chem

    props = torch.from_numpy(property_matrix([Chem.MolFromSmiles(s) for s in smiles])).float()
    vae.set_property_stats(props.mean(0), props.std(0))
    batch, _ = vae.tokenize(smiles)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)
    errors = []
    for _ in range(40):
        terms = vae.loss(batch, beta=0.01, properties=props, property_weight=1.0)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        errors.append(float(terms["property_mse"].detach()))
    assert errors[-1] < 0.5 * errors[0]
    # unknown values (NaN) add nothing
    holes = props.clone()
    holes[:, 0] = float("nan")
    assert vae.loss(batch, 0.0, holes, 1.0)["property_mse"] < vae.loss(batch, 0.0, props, 1.0)["property_mse"] + 1e-6
    predicted = vae.predict_properties(vae.posterior(batch)[0])
    assert predicted.shape == props.shape
    mw = CONDITION_PROPERTIES.index("mw")
    assert abs(float(predicted[:, mw].mean()) - float(props[:, mw].mean())) < 0.5 * float(props[:, mw].std())
    no_head = SelfiesVAE(tokens=vocab.tokens[3:], max_len=60, embed_dim=8, hidden_dim=32, latent_dim=8)
    assert "property_mse" not in no_head.loss(batch, 0.0, props, 1.0)
    with pytest.raises(ValueError, match="without a property head"):
        no_head.predict_properties(torch.zeros(1, 8))


def test_autoencoder_stage_with_a_property_head_logs_its_readout(tmp_path):
    cfg = AutoencoderTrainingConfig(
        n_train=200, n_test=20, hidden_dim=32, embed_dim=8, latent_dim=8, gru_dim=32, epochs=1, batch_size=100,
        log_every=1, beta_warmup_steps=2, n_prior_samples=4, property_weight=1.0, property_workers=2,
    )  # fmt: skip
    vae = train_autoencoder(tmp_path / "autoencoder", cfg, property_cache=tmp_path / "cache")
    assert list(vae.config.property_names) == list(CONDITION_PROPERTIES)
    assert len(vae.config.property_std) == len(CONDITION_PROPERTIES)
    log = [json.loads(line) for line in (tmp_path / "autoencoder" / "train_log.jsonl").read_text().splitlines()]
    assert all("property_mse" in r for r in log if r.get("stage") == "autoencoder")
    readout = next(r for r in log if r.get("event") == "property_readout")
    assert set(readout["r2"]) == set(CONDITION_PROPERTIES)
    cached = list((tmp_path / "cache").glob("*/autoencoder_properties.safetensors"))
    assert len(cached) == 1 and len(load_file(cached[0])["properties"]) == 200
    reloaded = SelfiesVAE.from_pretrained(tmp_path / "autoencoder")
    z = reloaded.encode_smiles(["CCO"])
    torch.testing.assert_close(reloaded.predict_properties(z), vae.predict_properties(z))
