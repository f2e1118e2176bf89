"""The fast paths of constrained decoding give exactly what the straightforward ones give."""

from __future__ import annotations

import random

import pytest
import torch

from reasoning.decoding import (
    _BOND_ORDER,
    _RING_LABELS,
    _SAMPLE,
    MAX_VALENCE,
    SmilesBounds,
    SmilesGrammarState,
    _constrained_probs,
    _filter_probs,
    _filter_probs_rows,
    _forced_smiles_token,
    _next_smiles_token,
    _pick_smiles_token,
    _sample,
    _sample_rows,
    _vocab,
    scaffold_template,
)

GRAMMAR = list(MAX_VALENCE) + list(_BOND_ORDER) + ["(", ")"] + list(_RING_LABELS)


def _settings() -> list[dict]:
    return [
        {},
        {"elements": {"C", "O", "N"}},
        {"bounds": SmilesBounds(min_atoms=6, max_atoms=12, min_rings=1, max_rings=2, max_heavy_mass=180.0)},
        {"bounds": SmilesBounds(scaffold=scaffold_template("c1ccc2[nH]ccc2c1"), max_atoms=25)},
        {"bounds": SmilesBounds(scaffold=scaffold_template("O=C1CCC(=O)N1"), max_heavy_mass=260.0)},
        {"elements": {"C", "S"}, "bounds": SmilesBounds(scaffold=scaffold_template("C1CCNCC1"))},
    ]


def _completable_after(state: SmilesGrammarState, token: str) -> bool:
    trial = state.copy()
    trial.push(token)
    return trial.completable()


def _random_states(n: int, seed: int) -> list[SmilesGrammarState]:
    """Prefixes decoding can reach: random walks over allowed tokens that keep the prefix completable
    (every setting, prefixes of every length)."""
    rng = random.Random(seed)
    settings = _settings()
    out = []
    for walk in range(n):
        state = SmilesGrammarState(**settings[walk % len(settings)])
        for _ in range(rng.randrange(0, 40)):
            allowed = [t for t in GRAMMAR if state.allows(t) and _completable_after(state, t)]
            if not allowed:
                break
            state.push(rng.choice(allowed))
        out.append(state)
    return out


def test_allowed_tokens_is_every_token_allows():
    rng = random.Random(0)
    settings = _settings()
    checked = 0
    for walk in range(600):
        state = SmilesGrammarState(**settings[walk % len(settings)])
        for _ in range(50):
            slow = [t for t in GRAMMAR if state.allows(t)]
            fast = state.allowed_tokens()
            assert sorted(fast) == sorted(slow) and len(set(fast)) == len(fast), (state, slow, fast)
            checked += 1
            if not slow:
                break
            state.push(rng.choice(slow))
    assert checked > 8000


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 0.95), (0.7, 0.5), (1.3, 1.0), (0.0, 0.95)])
def test_batched_filter_matches_row_by_row(temperature, top_p):
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(64, 111, generator=gen)
    logits[torch.rand(64, 111, generator=gen) < 0.7] = float("-inf")  # masked tokens, as in decoding
    logits[5] = float("-inf")  # a row with nothing allowed
    logits[7, :] = 0.5  # ties everywhere
    batched = _filter_probs_rows(logits, temperature, top_p)
    for row in range(len(logits)):
        single = _filter_probs(logits[row].clone(), temperature, top_p)
        assert torch.equal(batched[row].isnan(), single.isnan())
        assert torch.equal(batched[row].nan_to_num(-1.0), single.nan_to_num(-1.0)), row


@pytest.mark.parametrize("temperature", [0.9, 0.0])
def test_batched_smiles_step_draws_the_same_tokens(tokenizer, temperature):
    """Masks, distributions, accepted tokens, pushed states and random draws equal the one-row reference."""
    vocab = _vocab(tokenizer)
    states = _random_states(240, seed=1)
    logits = 2 * torch.randn(len(states), len(tokenizer), generator=torch.Generator().manual_seed(2))
    logits[::2, tokenizer.smiles_end_id] -= 4.0  # half the rows rarely end, so most steps pick a grammar token
    limit = 40  # some prefixes are near the length limit and write their completion instead
    reference_states = [s.copy() for s in states]
    reference_queues: list[list[str]] = [[] for _ in states]
    reference_gen = torch.Generator().manual_seed(3)
    reference = [
        _next_smiles_token(logits[i].clone(), vocab, s, q, limit, temperature, 0.95, reference_gen)
        for i, (s, q) in enumerate(zip(reference_states, reference_queues, strict=True))
    ]

    fast_gen = torch.Generator().manual_seed(3)
    queues: list[list[str]] = [[] for _ in states]
    fast = [_forced_smiles_token(s, q, limit) for s, q in zip(states, queues, strict=True)]
    rows = [i for i, token in enumerate(fast) if token is _SAMPLE]
    probs, allowed, finite = _constrained_probs(logits[rows], vocab, [states[i] for i in rows], temperature, 0.95)
    for i, p, ids, ok in zip(rows, probs, allowed, finite, strict=True):
        fast[i] = _pick_smiles_token(p, len(ids), vocab, states[i], queues[i], fast_gen, ok)
    assert fast == reference
    assert queues == reference_queues
    assert [s.element for s in states] == [s.element for s in reference_states]
    assert [s.n_tokens for s in states] == [s.n_tokens for s in reference_states]
    assert torch.equal(fast_gen.get_state(), reference_gen.get_state())  # the same number of draws
    assert len(rows) > 150 and sum(fast[i] is not None for i in rows) > 60


def test_a_remembered_completion_answers_completable_as_a_fresh_search():
    """Prefixes that follow their own last completion skip the search; the answer is the search's."""
    rng = random.Random(4)
    settings = _settings()
    shortcuts = 0
    for walk in range(60):
        state = SmilesGrammarState(**settings[walk % len(settings)])
        for _ in range(45):
            candidates = state.allowed_tokens()
            if state.tail:  # follow the remembered completion now and then, as a sampled token may
                candidates += [state.tail[0]] * 3
            accepted = []
            for token in candidates:
                trial = state.copy()
                trial.push(token)
                fresh = trial.copy()
                fresh.tail = None
                shortcuts += trial.tail is not None and not trial.can_end()
                expected = fresh.can_end() or fresh.completion() is not None
                assert trial.completable() == expected, (state, token)
                if expected:
                    accepted.append((token, trial.tail))
            if not accepted:
                break
            token, tail = rng.choice(accepted)
            state.push(token)
            state.tail = tail  # as decoding does: the state takes over what its trial found
    assert shortcuts > 100


def test_the_exponential_race_is_torch_multinomial():
    ours, theirs = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    shapes = torch.Generator().manual_seed(7)
    for _ in range(500):
        probs = torch.softmax(3 * torch.randn(111, generator=shapes), dim=-1)
        probs[torch.rand(111, generator=shapes) < 0.6] = 0.0
        probs[3] += 1e-4
        probs = probs / float(probs.sum())
        assert _sample(probs, ours) == int(torch.multinomial(probs, 1, generator=theirs))
    assert torch.equal(ours.get_state(), theirs.get_state())


@pytest.mark.parametrize("temperature", [0.9, 0.0])
def test_sampling_only_the_needed_rows_gives_their_samples_of_all_rows(tokenizer, temperature):
    vocab = _vocab(tokenizer)
    shapes = torch.Generator().manual_seed(8)
    logits = 2 * torch.randn(24, len(tokenizer), generator=shapes)
    in_smiles = (torch.rand(24, generator=shapes) < 0.5).tolist()
    needed = (torch.rand(24, generator=shapes) < 0.6).tolist()
    # the straightforward way: ban the trace rows' special tokens, top-p, torch.multinomial over every row
    banned = logits.clone()
    for i, smiles in enumerate(in_smiles):
        if not smiles:
            banned[i, vocab.trace_banned] = float("-inf")
    theirs = torch.Generator().manual_seed(9)
    if temperature > 0:
        probs = torch.stack([_filter_probs(row, temperature, 0.95) for row in banned])
        expected = torch.multinomial(probs, 1, generator=theirs).squeeze(1).tolist()
    else:
        expected = banned.argmax(dim=-1).tolist()
    ours = torch.Generator().manual_seed(9)
    got = _sample_rows(logits, vocab, in_smiles, needed, temperature, 0.95, ours)
    assert got == [token if need else None for token, need in zip(expected, needed, strict=True)]
    assert torch.equal(ours.get_state(), theirs.get_state())


def test_rotary_embedding_of_q_and_k_together_is_the_stacked_formula():
    from reasoning.model import _apply_rope, _rope_tables

    cos, sin = _rope_tables(16, 40, 10000.0)
    qk = torch.randn(2, 3, 4, 40, 16)
    x1, x2 = qk[..., 0::2], qk[..., 1::2]
    expected = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    assert torch.equal(_apply_rope(qk, cos, sin), expected)
    assert torch.equal(_apply_rope(qk[0], cos, sin), expected[0])


@pytest.mark.parametrize("rows", [[0, 2, 3], [1, 4], [0, 1, 2, 3, 4], [3], [2, 0, 4], [1, 1, 3]])
def test_kv_cache_drops_rows_in_place_as_a_copy_would(tiny_model, rows):
    """Increasing rows are compacted in place, any other choice is copied; the next steps agree exactly."""
    from reasoning.model import KVCache

    gen = torch.Generator().manual_seed(10)
    vocab = tiny_model.config.vocab_size
    ids = torch.randint(0, vocab, (5, 6), generator=gen)
    steps = [torch.randint(0, vocab, (len(rows), 1), generator=gen) for _ in range(3)]
    with torch.inference_mode():
        cache = KVCache(tiny_model.config.n_layers)
        tiny_model(ids, cache=cache)
        cache.select(torch.tensor(rows))
        stepped = [tiny_model(step, cache=cache)[:, -1] for step in steps]
        copied = KVCache(tiny_model.config.n_layers)
        tiny_model(ids, cache=copied)
        index, n = torch.tensor(rows), copied.length
        copied._k = [KVCache._rows(k, index, n) for k in copied._k]  # the copying path, for every choice
        copied._v = [KVCache._rows(v, index, n) for v in copied._v]
        expected = [tiny_model(step, cache=copied)[:, -1] for step in steps]
    for got, want in zip(stepped, expected, strict=True):
        assert torch.equal(got, want)
