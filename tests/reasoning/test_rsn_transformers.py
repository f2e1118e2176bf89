"""The Hugging Face backend on a tiny random GPT-2 saved to a temporary folder: the logits processor alone
makes every constrained answer a valid molecule within the spec's elements and bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rdkit import Chem
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from reasoning import DesignSpec, Proposer
from reasoning.backends import BACKENDS, load_backend
from reasoning.backends.transformers import TransformersReasoner, smiles_vocabulary
from reasoning.decoding import SmilesBounds
from reasoning.traces import iter_traces
from reasoning.train.sft import example_text
from workbench.chem import validate
from workbench.data import load_corpus
from workbench.errors import CheckpointError

TAGS = ["<spec>", "</spec>", "<smiles>", "</smiles>"]
PROMPT = "<spec> mw 150 to 300 ; require C(=O)N </spec>"


def _save_tiny_model(folder: Path, *, tags: bool = True, vocab_size: int = 400) -> Path:
    """A byte-level BPE tokenizer trained on teacher traces, and a random one-layer GPT-2 over it.

    With ``tags=False`` the answer tags are not tokens of their own and a small ``vocab_size`` keeps
    them in pieces."""
    texts = [example_text(r) for r in iter_traces(load_corpus("chembl-drugs", limit=20), seed=1)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", *(TAGS if tags else [])],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    end = fast.eos_token_id
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(fast), bos_token_id=end, eos_token_id=end)
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return _save_tiny_model(tmp_path_factory.mktemp("hf-tiny"))


@pytest.fixture(scope="module")
def reasoner(model_folder) -> TransformersReasoner:
    return TransformersReasoner.from_pretrained(model_folder, max_trace_tokens=12, max_smiles_tokens=40)


def test_registered_as_a_backend(model_folder):
    assert "transformers" in BACKENDS
    loaded = load_backend("transformers", folder=model_folder, max_trace_tokens=4)
    assert isinstance(loaded, TransformersReasoner) and loaded.name == "transformers"


def test_the_vocabulary_split_finds_multi_token_smiles_entries(reasoner):
    vocab = smiles_vocabulary(reasoner.tokenizer)
    assert vocab.open_single is not None and len(vocab.close_ids) == 1
    assert any(len(pieces) > 1 for pieces in vocab.pieces.values())  # merges such as "CC" or "=O"
    assert all(reasoner.tokenizer.decode([i]).strip() == "".join(p) for i, p in vocab.pieces.items())


def test_constrained_samples_are_valid_and_within_elements_and_bounds(reasoner):
    bounds = SmilesBounds(min_atoms=4, max_atoms=12, max_rings=2)
    samples = reasoner.generate(PROMPT, 16, seed=3, elements=["C", "N", "O"], bounds=bounds)
    assert len(samples) == 16
    for sample in samples:
        report = validate(sample.smiles)
        assert report.ok, (sample.smiles, report)
        mol = Chem.MolFromSmiles(sample.smiles)
        assert {a.GetSymbol() for a in mol.GetAtoms()} <= {"C", "N", "O"}, sample.smiles
        assert 4 <= mol.GetNumHeavyAtoms() <= 12, sample.smiles
        assert sample.trace and "<smiles>" not in sample.trace


def test_answer_tags_written_in_pieces(tmp_path):
    folder = _save_tiny_model(tmp_path / "pieces", tags=False, vocab_size=280)
    reasoner = TransformersReasoner.from_pretrained(folder, max_trace_tokens=10, max_smiles_tokens=30)
    vocab = smiles_vocabulary(reasoner.tokenizer)
    assert vocab.open_single is None and len(vocab.open_ids) > 1 and len(vocab.close_ids) > 1
    samples = reasoner.generate(PROMPT, 8, seed=5, elements=["C", "N", "O", "S"])
    assert all(validate(s.smiles).ok for s in samples), [s.smiles for s in samples]


def test_plain_sampling_of_the_random_model_is_mostly_invalid(reasoner):
    samples = reasoner.generate(PROMPT, 16, seed=3, constrained=False)
    valid = sum(validate(s.smiles).ok for s in samples)
    assert valid <= 4, [s.smiles for s in samples]


def test_sampling_is_deterministic_for_a_seed(reasoner):
    first = reasoner.generate(PROMPT, 4, seed=11)
    again = reasoner.generate(PROMPT, 4, seed=11)
    other = reasoner.generate(PROMPT, 4, seed=12)
    assert [(s.trace, s.smiles) for s in first] == [(s.trace, s.smiles) for s in again]
    assert [(s.trace, s.smiles) for s in first] != [(s.trace, s.smiles) for s in other]


def test_missing_folder_raises_checkpoint_error(tmp_path):
    missing = tmp_path / "no-model-here"
    with pytest.raises(CheckpointError, match="no-model-here"):
        TransformersReasoner.from_pretrained(missing)


@pytest.mark.parametrize("damaged", ["config.json", "model.safetensors"])
def test_corrupt_files_raise_checkpoint_error_naming_the_path(model_folder, tmp_path, damaged):
    folder = tmp_path / "damaged"
    folder.mkdir()
    for item in model_folder.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    (folder / damaged).write_bytes(b"{ not what it should be")
    with pytest.raises(CheckpointError) as err:
        TransformersReasoner.from_pretrained(folder)
    assert str(folder) in str(err.value)


def test_proposer_runs_end_to_end(reasoner):
    spec = DesignSpec(properties={"heavy_atoms": [5, 14]}, elements=["C", "N", "O"])
    found = Proposer(reasoner, rounds=2, samples_per_round=6, timeout_s=60).propose(spec, n=2, seed=0)
    assert found.status in ("satisfied", "partial", "unsatisfiable")
    assert found.stats["sampled"] in (6, 12) and found.stats["valid"] == found.stats["sampled"]
    assert found and all(p.valid and p.validation.ok and p.spec_report.results for p in found)
    assert all(p.trace for p in found)
