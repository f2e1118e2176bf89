"""A SELFIES variational autoencoder: the molecular latent space the denoiser diffuses in.

>>> from diffusion.autoencoder import SelfiesVAE  # doctest: +SKIP
>>> vae = SelfiesVAE.from_pretrained("diffusion/checkpoints/autoencoder")  # doctest: +SKIP
>>> vae.decode_smiles(vae.encode_smiles(["CCO"]))  # doctest: +SKIP
['CCO']

SELFIES strings are split into tokens from a fixed alphabet (stored in the JSON config), padded to
``max_len`` and ended with an end token. The encoder reads the embedded token sequence into a Gaussian
posterior (``mu``, ``logvar``) of ``latent_dim`` dimensions: an MLP over the whole padded sequence
(``encoder_type="mlp"``) or a bidirectional GRU (``"gru"``), whose final states do not depend on where
in the fixed-length window a ring or branch token sits. The decoder is one of two kinds
(``decoder_type`` in the config):

- ``"gru"`` (what ``make train-diffusion`` trains): an autoregressive GRU that starts from the
  latent and sees it at every step, writing one token after another. Latents between training
  molecules still decode to coherent molecules, because each token is chosen given the ones before.
- ``"mlp"``: an MLP that writes the logits of every position at once. Decoding is a few matrix
  products, but a latent away from the training molecules mixes their tokens position by position
  (on MOSES, N(0, I) samples of such a model decode to FCD ~30 at any KL weight from 0.01 to 0.5).

Any token sequence decodes to a valid SELFIES string, so every latent decodes to a molecule;
:meth:`SelfiesVAE.decode_molecules` still validates each one with :func:`workbench.chem.validate`
and reports the ones that fail.

``latent_mean`` / ``latent_std`` (per dimension, measured on the training set after training) turn
posterior means into the unit-scale latents the denoiser is trained on: see :meth:`normalise` and
:meth:`denormalise`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import selfies as sf
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F

from workbench.chem import Molecule, ValidationReport, validate
from workbench.chem.rules import DEFAULT_RULES, RuleSet
from workbench.errors import InvalidMoleculeError

__all__ = ["SelfiesVAE", "SelfiesVocabulary", "DecodedMolecule", "DECISIVE_RULES", "PAD", "EOS", "BOS"]

# SMILES -> SELFIES is the slow part of tokenizing a corpus; building the vocabulary and then the
# token ids encodes every molecule twice, so remember the results.
_to_selfies = functools.lru_cache(maxsize=250_000)(sf.encoder)

DECISIVE_RULES: RuleSet = DEFAULT_RULES.disable(
    *[r.id for r in DEFAULT_RULES if r.enabled and r.stage != "sanitize" and r.severity != "error"]
)
"""The default rules that can fail a molecule (severity ``error``); validation verdicts match DEFAULT_RULES."""

PAD = "[nop]"
EOS = "[EOS]"
BOS = "[BOS]"


class SelfiesVocabulary:
    """Token <-> index mapping for SELFIES with padding, begin and end tokens.

    >>> vocab = SelfiesVocabulary.from_smiles(["CCO", "c1ccccc1"])
    >>> vocab.decode(vocab.encode("CCO", max_len=8))
    'CCO'
    """

    def __init__(self, tokens: Sequence[str]):
        specials = [PAD, BOS, EOS]
        self.tokens: list[str] = specials + [t for t in tokens if t not in specials]
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def from_smiles(cls, smiles: Sequence[str]) -> SelfiesVocabulary:
        """Build the alphabet of every SELFIES token used by ``smiles`` (sorted, so it is reproducible)."""
        return cls.from_selfies([_to_selfies(s) for s in smiles])

    @classmethod
    def from_selfies(cls, selfies: Sequence[str | None]) -> SelfiesVocabulary:
        """The same alphabet from SELFIES strings already translated (None entries are skipped)."""
        alphabet: set[str] = set()
        for s in selfies:
            if s is not None:
                alphabet.update(sf.split_selfies(s))
        return cls(sorted(alphabet))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return self.index[PAD]

    @property
    def bos_id(self) -> int:
        return self.index[BOS]

    @property
    def eos_id(self) -> int:
        return self.index[EOS]

    def encode(self, smiles: str, max_len: int) -> list[int] | None:
        """Token ids of ``smiles`` ending in EOS and padded to ``max_len``; None if too long or unencodable."""
        try:
            selfies = _to_selfies(smiles)
        except sf.EncoderError:
            return None
        if selfies is None:
            return None
        return self.encode_selfies(selfies, max_len)

    def encode_selfies(self, selfies: str | None, max_len: int) -> list[int] | None:
        """Token ids of a SELFIES string (as :meth:`encode`, without the SMILES -> SELFIES step)."""
        if selfies is None:
            return None
        tokens = list(sf.split_selfies(selfies))
        if len(tokens) + 1 > max_len or any(t not in self.index for t in tokens):
            return None
        ids = [self.index[t] for t in tokens] + [self.eos_id]
        return ids + [self.pad_id] * (max_len - len(ids))

    def decode(self, ids: Sequence[int]) -> str:
        """SMILES for token ids, reading up to the first EOS (SELFIES guarantees it parses)."""
        tokens = []
        for i in ids:
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            tokens.append(self.tokens[i])
        return sf.decoder("".join(tokens)) or ""


@dataclass(frozen=True)
class DecodedMolecule:
    """One decoded latent: the SMILES it became, the Molecule (None if it failed) and its report.

    ``attempts`` is 1 when the latent itself decoded to a valid molecule; more when a failed decode
    was retried from nearby latents (see :meth:`SelfiesVAE.decode_molecules`).
    """

    smiles: str
    molecule: Molecule | None
    validation: ValidationReport
    attempts: int = 1


class SelfiesVAE(ModelMixin, ConfigMixin):
    """SELFIES VAE: MLP or bidirectional-GRU encoder over the embedded tokens, GRU or MLP decoder.

    >>> vae = SelfiesVAE(tokens=["[C]", "[O]"], max_len=8, embed_dim=8, hidden_dim=16, latent_dim=4)
    >>> vae.encode_smiles(["CCO", "CO"]).shape
    torch.Size([2, 4])

    ``decoder_type="gru"`` (``gru_dim`` wide) is trained with teacher forcing and decodes greedily, token
    by token; ``decoder_type="mlp"`` predicts every position at once from the latent (see the module
    docstring for why the shipped model uses the GRU).
    """

    @register_to_config
    def __init__(
        self,
        tokens: Sequence[str] = (),
        max_len: int = 60,
        embed_dim: int = 16,
        hidden_dim: int = 512,
        latent_dim: int = 64,
        latent_mean: Sequence[float] | None = None,
        latent_std: Sequence[float] | None = None,
        decoder_type: str = "mlp",
        gru_dim: int = 256,
        encoder_type: str = "mlp",
        property_names: Sequence[str] = (),
        property_mean: Sequence[float] | None = None,
        property_std: Sequence[float] | None = None,
    ):
        super().__init__()
        if decoder_type not in ("mlp", "gru"):
            raise ValueError(f"decoder_type must be 'mlp' or 'gru', got {decoder_type!r}")
        if encoder_type not in ("mlp", "gru"):
            raise ValueError(f"encoder_type must be 'mlp' or 'gru', got {encoder_type!r}")
        self.vocab = SelfiesVocabulary(tokens)
        n_tokens = len(self.vocab)
        self.embed = nn.Embedding(n_tokens, embed_dim, padding_idx=self.vocab.pad_id)
        if encoder_type == "gru":  # bidirectional GRU over the tokens; both final states -> MLP
            self.encoder_gru = nn.GRU(embed_dim, gru_dim // 2, batch_first=True, bidirectional=True)
            self.encoder = nn.Sequential(nn.Linear(gru_dim, hidden_dim), nn.SiLU())
        else:
            self.encoder = nn.Sequential(
                nn.Linear(max_len * embed_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU()
            )
        self.to_posterior = nn.Linear(hidden_dim, 2 * latent_dim)
        if decoder_type == "gru":
            self.latent_to_state = nn.Linear(latent_dim, gru_dim)
            self.gru = nn.GRU(embed_dim + latent_dim, gru_dim, batch_first=True)
            self.to_logits = nn.Linear(gru_dim, n_tokens)
        else:
            self.decoder = nn.Sequential(
                nn.Linear(latent_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU()
            )
            self.to_logits = nn.Linear(hidden_dim, max_len * n_tokens)
        mean = torch.tensor(latent_mean if latent_mean is not None else [0.0] * latent_dim, dtype=torch.float32)
        std = torch.tensor(latent_std if latent_std is not None else [1.0] * latent_dim, dtype=torch.float32)
        self.register_buffer("_latent_mean", mean, persistent=False)
        self.register_buffer("_latent_std", std, persistent=False)
        # Optional linear read-out of (normalised) RDKit properties from the posterior mean: trained
        # jointly, it lays the latent space out along the properties the denoiser is conditioned on.
        n_props = len(property_names)
        self.property_head = nn.Linear(latent_dim, n_props) if n_props else None
        p_mean = torch.tensor(property_mean if property_mean is not None else [0.0] * n_props, dtype=torch.float32)
        p_std = torch.tensor(property_std if property_std is not None else [1.0] * n_props, dtype=torch.float32)
        self.register_buffer("_property_mean", p_mean, persistent=False)
        self.register_buffer("_property_std", p_std, persistent=False)

    # ------------------------------------------------------------------ tokens
    def tokenize(
        self, smiles: Sequence[str], selfies: Sequence[str | None] | None = None
    ) -> tuple[torch.Tensor, list[int]]:
        """Token ids (batch, max_len) of the encodable SMILES, and the indices of those kept.

        ``selfies`` (the SELFIES of each SMILES, None where it has none) skips the slow SMILES ->
        SELFIES translation when it is known already.
        """
        rows, kept = [], []
        for i, s in enumerate(smiles):
            if selfies is None:
                ids = self.vocab.encode(s, self.config.max_len)
            else:
                ids = self.vocab.encode_selfies(selfies[i], self.config.max_len)
            if ids is not None:
                rows.append(ids)
                kept.append(i)
        if not rows:
            return torch.zeros(0, self.config.max_len, dtype=torch.long), kept
        return torch.tensor(rows, dtype=torch.long), kept

    # ------------------------------------------------------------------ network
    def posterior(self, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu``, ``logvar`` (batch, latent_dim) of token ids (batch, length <= max_len)."""
        if self.config.encoder_type == "gru":
            lengths = (token_ids != self.vocab.pad_id).sum(1).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(
                self.embed(token_ids), lengths, batch_first=True, enforce_sorted=False
            )
            _, final = self.encoder_gru(packed)  # (2, batch, gru_dim // 2): forward and backward
            features = self.encoder(torch.cat([final[0], final[1]], dim=-1))
        else:
            length = token_ids.shape[1]
            if length < self.config.max_len:  # batches may be trimmed to their longest sequence
                token_ids = F.pad(token_ids, (0, self.config.max_len - length), value=self.vocab.pad_id)
            features = self.encoder(self.embed(token_ids).flatten(1))
        mu, logvar = self.to_posterior(features).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 6.0)

    def logits(self, z: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token logits (batch, length, vocab) from latents ``z`` (batch, latent_dim).

        The MLP decoder gives every position (length ``max_len``) from ``z`` alone; the GRU decoder
        needs the tokens (``token_ids``, batch x length) and gives each position's logits given the
        tokens before it (teacher forcing).
        """
        if self.config.decoder_type == "mlp":
            return self.to_logits(self.decoder(z)).view(z.shape[0], self.config.max_len, len(self.vocab))
        if token_ids is None:
            raise ValueError("the GRU decoder needs token_ids for teacher forcing; use greedy_decode to generate")
        start = torch.full_like(token_ids[:, :1], self.vocab.bos_id)
        previous = torch.cat([start, token_ids[:, :-1]], dim=1)
        steps = torch.cat([self.embed(previous), z.unsqueeze(1).expand(-1, previous.shape[1], -1)], dim=-1)
        out, _ = self.gru(steps, self._initial_state(z))
        return self.to_logits(out)

    def _initial_state(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.latent_to_state(z)).unsqueeze(0)

    def loss(
        self,
        token_ids: torch.Tensor,
        beta: float,
        properties: torch.Tensor | None = None,
        property_weight: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """ELBO terms for a batch: ``loss`` = reconstruction (nats/molecule) + ``beta`` x KL.

        With a property head, ``properties`` (batch, len(property_names), raw units, NaN where
        unknown) adds ``property_weight`` x the squared error of the head's prediction from ``mu``,
        in training-set std, summed over properties and averaged over molecules (``property_mse``).
        """
        mu, logvar = self.posterior(token_ids)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = self.logits(z, token_ids)[:, : token_ids.shape[1]]
        # The loss covers tokens up to and including EOS; padding after it carries no information.
        mask = (token_ids != self.vocab.pad_id).float()
        ce = F.cross_entropy(logits.transpose(1, 2), token_ids, reduction="none")
        reconstruction = (ce * mask).sum(dim=1).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(dim=1).mean()
        with torch.no_grad():
            token_acc = ((logits.argmax(-1) == token_ids).float() * mask).sum() / mask.sum()
        terms = {"loss": reconstruction + beta * kl, "reconstruction": reconstruction, "kl": kl, "token_acc": token_acc}
        if properties is not None and self.property_head is not None:
            target = (properties.to(mu) - self._property_mean) / self._property_std
            known = torch.isfinite(target)
            error = (self.property_head(mu) - target.nan_to_num()).pow(2) * known
            terms["property_mse"] = error.sum(1).mean()
            terms["loss"] = terms["loss"] + property_weight * terms["property_mse"]
        return terms

    def set_property_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Record the training-set mean/std the property head's targets are normalised with (saved in the config)."""
        self.register_to_config(property_mean=[float(x) for x in mean], property_std=[float(x) for x in std])
        self._property_mean.copy_(mean.to(self._property_mean))
        self._property_std.copy_(std.to(self._property_std))

    @torch.no_grad()
    def predict_properties(self, z: torch.Tensor, normalised: bool = False) -> torch.Tensor:
        """The property head's read-out (batch, len(property_names)) in raw units, from latents."""
        if self.property_head is None:
            raise ValueError("this autoencoder was trained without a property head (property_names is empty)")
        mu = self.denormalise(z) if normalised else z
        return self.property_head(mu.to(self.device)) * self._property_std + self._property_mean

    @torch.no_grad()
    def greedy_decode(self, z: torch.Tensor, min_tokens: int = 4) -> torch.Tensor:
        """Token ids (batch, max_len): the most likely token at every position, padded after the first EOS.

        The end token is not allowed before ``min_tokens`` tokens, so no latent decodes to an empty
        (or one-atom) molecule.
        """
        if self.config.decoder_type == "gru":
            return self._greedy_decode_gru(z, min_tokens)
        logits = self.logits(z)
        logits[:, :, self.vocab.pad_id] = -torch.inf
        logits[:, :, self.vocab.bos_id] = -torch.inf
        logits[:, :min_tokens, self.vocab.eos_id] = -torch.inf
        out = logits.argmax(-1)
        ended = (out == self.vocab.eos_id).cumsum(dim=1) > 0
        after_end = torch.cat([torch.zeros_like(ended[:, :1]), ended[:, :-1]], dim=1)
        return out.masked_fill(after_end, self.vocab.pad_id)

    def _greedy_decode_gru(self, z: torch.Tensor, min_tokens: int) -> torch.Tensor:
        """Token by token; rows that have written their end token drop out of the batch."""
        n, max_len = z.shape[0], self.config.max_len
        out = torch.full((n, max_len), self.vocab.pad_id, dtype=torch.long, device=z.device)
        token = torch.full((n,), self.vocab.bos_id, dtype=torch.long, device=z.device)
        active = torch.arange(n, device=z.device)  # rows still writing
        state, latent = self._initial_state(z), z
        for i in range(max_len):
            step, state = self.gru(torch.cat([self.embed(token), latent], dim=-1).unsqueeze(1), state)
            logits = self.to_logits(step[:, 0])
            logits[:, self.vocab.pad_id] = -torch.inf
            logits[:, self.vocab.bos_id] = -torch.inf
            if i < min_tokens:
                logits[:, self.vocab.eos_id] = -torch.inf
            token = logits.argmax(-1)
            out[active, i] = token
            going = token != self.vocab.eos_id
            if not bool(going.any()):
                break
            if not bool(going.all()):
                active, token, latent, state = active[going], token[going], latent[going], state[:, going]
        return out

    # ------------------------------------------------------------------ latents in unit scale
    def normalise(self, mu: torch.Tensor) -> torch.Tensor:
        """Posterior means -> unit-scale latents (what the denoiser sees)."""
        return (mu - self._latent_mean) / self._latent_std

    def denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        """Unit-scale latents -> decoder latents."""
        return latents * self._latent_std + self._latent_mean

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Record the per-dimension latent mean/std (saved in the config)."""
        self.register_to_config(latent_mean=[float(x) for x in mean], latent_std=[float(x) for x in std])
        self._latent_mean.copy_(mean.to(self._latent_mean))
        self._latent_std.copy_(std.to(self._latent_std))

    # ------------------------------------------------------------------ SMILES in, SMILES out
    @torch.no_grad()
    def encode_smiles(self, smiles: Sequence[str], normalised: bool = False) -> torch.Tensor:
        """Posterior means (batch, latent_dim) of ``smiles``; raises InvalidMoleculeError for unencodable ones."""
        token_ids, kept = self.tokenize(smiles)
        if len(kept) != len(smiles):
            bad = next(s for i, s in enumerate(smiles) if i not in set(kept))
            raise InvalidMoleculeError(
                bad, f"cannot be encoded: longer than {self.config.max_len - 1} SELFIES tokens or unknown tokens"
            )
        mu, _ = self.posterior(token_ids.to(self.device))
        return self.normalise(mu) if normalised else mu

    @torch.no_grad()
    def decode_smiles(self, z: torch.Tensor, normalised: bool = False) -> list[str]:
        """SMILES decoded greedily from latents (``normalised``: unit-scale latents from the denoiser)."""
        z = self.denormalise(z) if normalised else z
        return [self.vocab.decode(row) for row in self.greedy_decode(z.to(self.device)).tolist()]

    def decode_molecules(
        self,
        z: torch.Tensor,
        normalised: bool = False,
        rules: RuleSet | None = None,
        retries: int = 0,
        retry_noise: float = 0.15,
        seed: int = 0,
        indices: Sequence[int] | None = None,
    ) -> list[DecodedMolecule]:
        """Decode latents and validate each result with :func:`workbench.chem.validate`.

        Never raises for bad chemistry: a decoded string that is empty or fails RDKit gives
        ``molecule=None`` and a report explaining why. ``rules`` defaults to :data:`DECISIVE_RULES`
        (every rule that can fail a molecule, without the warning-only structural alerts and
        drug-likeness filters, which cost ~30x more): ``ok`` is the same as with the default rule
        set; pass ``workbench.chem.DEFAULT_RULES`` for the warnings too.

        With ``retries`` > 0 a latent whose decode fails validation is decoded again from up to
        ``retries`` nearby latents ``z + k * retry_noise * noise`` (unit-scale latents, k = 1, 2, ...);
        the first valid one is kept and ``attempts`` records how many decodes it took. A latent that
        still fails keeps its first report. The noise of row ``i`` depends only on ``seed`` and
        ``indices[i]`` (default: ``i``), so decoding a batch in parts gives the same molecules.
        """
        rules = DECISIVE_RULES if rules is None else rules
        unit = z if normalised else self.normalise(z)
        indices = list(range(len(unit))) if indices is None else [int(i) for i in indices]
        if len(indices) != len(unit):
            raise ValueError(f"indices has {len(indices)} entries for {len(unit)} latents")
        out = [self._decode_checked(s, rules) for s in self.decode_smiles(unit, normalised=True)]
        generators: dict[int, torch.Generator] = {}  # one noise stream per sample: fresh noise each attempt
        for attempt in range(1, retries + 1):
            failed = [i for i, d in enumerate(out) if d.molecule is None]
            if not failed:
                break
            for i in failed:
                if i not in generators:
                    generators[i] = torch.Generator().manual_seed(int(seed) * 1_000_003 + indices[i])
            noise = torch.stack([torch.randn(unit.shape[1], generator=generators[i]) for i in failed]).to(unit)
            nearby = unit[failed] + attempt * retry_noise * noise
            for i, smiles in zip(failed, self.decode_smiles(nearby, normalised=True), strict=True):
                retry = self._decode_checked(smiles, rules)
                if retry.molecule is not None:
                    out[i] = DecodedMolecule(retry.smiles, retry.molecule, retry.validation, attempt + 1)
        return out

    @staticmethod
    def _decode_checked(smiles: str, rules: RuleSet) -> DecodedMolecule:
        report = validate(smiles, rules)  # one RDKit parse; the report carries the sanitized Molecule
        return DecodedMolecule(smiles, report.molecule if report.ok and smiles else None, report)

    @torch.no_grad()
    def reconstruction_accuracy(self, smiles: Sequence[str], batch_size: int = 512) -> dict[str, float]:
        """Fraction of ``smiles`` whose posterior mean decodes back to the same canonical molecule.

        Also returns the token accuracy under greedy decoding and how many inputs were encodable.
        """
        token_ids, kept = self.tokenize(smiles)
        exact, tokens_right, tokens_total = 0, 0, 0
        for start in range(0, len(kept), batch_size):
            ids = token_ids[start : start + batch_size].to(self.device)
            mu, _ = self.posterior(ids)
            decoded = self.greedy_decode(mu)
            mask = ids != self.vocab.pad_id
            tokens_right += int(((decoded == ids) & mask).sum())
            tokens_total += int(mask.sum())
            for row_in, row_out in zip(ids.tolist(), decoded.tolist(), strict=True):
                exact += _same_molecule(self.vocab.decode(row_in), self.vocab.decode(row_out))
        n = max(len(kept), 1)
        return {
            "exact": exact / n,
            "token_acc": tokens_right / max(tokens_total, 1),
            "n": len(kept),
            "n_skipped": len(smiles) - len(kept),
        }


def _same_molecule(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return Molecule(a).smiles == Molecule(b).smiles
    except InvalidMoleculeError:
        return False
