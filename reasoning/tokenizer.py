"""Tokenizer: a SMILES/SMARTS regex tokenizer plus a small word vocabulary for specs and traces.

Text is split on spaces into chunks. A chunk in the word vocabulary is one token; any other chunk
(a SMILES, a SMARTS, a number) is split with the SMILES regex, and two such chunks in a row are
separated by a ``<s>`` token so decoding restores the spaces exactly.

>>> tok = ReasoningTokenizer.build(["<spec> mw 250 to 400 </spec>"])
>>> tok.decode(tok.encode("<spec> mw 250 to 400 </spec>"))
'<spec> mw 250 to 400 </spec>'
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from workbench.chem.properties import NUMERIC_PROPERTIES
from workbench.errors import CheckpointError

__all__ = ["SMILES_REGEX", "smiles_tokens", "ReasoningTokenizer", "SPECIAL_TOKENS", "WORDS"]

SMILES_REGEX = re.compile(
    r"(\[[^\]]+\]|Br|Cl|Si|Se|N|O|S|P|F|I|B|C|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%\d{2}|\d|.)"
)

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>", "<s>", "<smiles>", "</smiles>")
WORDS = (
    "<spec>",
    "</spec>",
    "<retry>",
    "</retry>",
    "<think>",
    "</think>",
    "restate",
    "to",
    ";",
    "require",
    "forbid",
    "scaffold",
    "elements",
    "add",
    "gives",
    "check",
    "ok",
    "no",
    "none",
    "valid",
    "unique",
    "property",
    *NUMERIC_PROPERTIES,
)

# single-character and multi-letter SMILES tokens that are always in the vocabulary
_BASE_SMILES = [
    "C",
    "N",
    "O",
    "S",
    "P",
    "F",
    "I",
    "B",
    "Br",
    "Cl",
    "Si",
    "Se",
    "c",
    "n",
    "o",
    "s",
    "p",
    "b",
    "(",
    ")",
    ".",
    "=",
    "#",
    "-",
    "+",
    "\\",
    "/",
    ":",
    "~",
    "@",
    "?",
    ">",
    "*",
    "$",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
] + [f"%{i}" for i in range(10, 20)]


def smiles_tokens(text: str) -> list[str]:
    """Split a SMILES/SMARTS string into tokens (bracket atoms and ``%nn`` ring labels stay whole).

    >>> smiles_tokens("C1=CC=C(Cl)C=C1[N+](=O)[O-]")[:6]
    ['C', '1', '=', 'C', 'C', '=']
    """
    return SMILES_REGEX.findall(text)


class ReasoningTokenizer:
    """Maps spec/trace/SMILES text to token ids and back. Build it from a corpus, save it as JSON.

    >>> tok = ReasoningTokenizer.build(["C1=CC=CC=C1"])
    >>> tok.decode(tok.encode("<smiles> C1=CC=CC=C1 </smiles>"))
    '<smiles> C1=CC=CC=C1 </smiles>'
    """

    def __init__(self, tokens: list[str]):
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in vocabulary")
        for required in SPECIAL_TOKENS:
            if required not in tokens:
                raise ValueError(f"vocabulary lacks the special token {required!r}")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.words = set(WORDS) | {t for t in SPECIAL_TOKENS if t != "<s>"}
        self.pad_id = self.index["<pad>"]
        self.bos_id = self.index["<bos>"]
        self.eos_id = self.index["<eos>"]
        self.unk_id = self.index["<unk>"]
        self.space_id = self.index["<s>"]
        self.smiles_start_id = self.index["<smiles>"]
        self.smiles_end_id = self.index["</smiles>"]

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 3, max_bracket_tokens: int = 200) -> ReasoningTokenizer:
        """Fixed specials, words and SMILES symbols, plus the bracket atoms/SMARTS seen at least ``min_count`` times."""
        counts: Counter[str] = Counter()
        fixed = list(SPECIAL_TOKENS) + list(WORDS) + _BASE_SMILES
        fixed_set = set(fixed)
        for text in texts:
            for chunk in text.split():
                if chunk not in fixed_set:
                    counts.update(t for t in smiles_tokens(chunk) if t not in fixed_set)
        extra = [t for t, c in counts.most_common(max_bracket_tokens) if c >= min_count]
        return cls(fixed + sorted(extra))

    # ------------------------------------------------------------------ encoding
    def tokenize(self, text: str) -> list[str]:
        """Text to token strings (``<s>`` between consecutive non-word chunks)."""
        out: list[str] = []
        previous_was_word = True
        for chunk in text.split():
            if chunk in self.words:
                out.append(chunk)
                previous_was_word = True
            else:
                if not previous_was_word:
                    out.append("<s>")
                out.extend(smiles_tokens(chunk))
                previous_was_word = False
        return out

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Text to token ids; unknown symbols become ``<unk>``."""
        ids = [self.index.get(t, self.unk_id) for t in self.tokenize(text)]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Token ids back to text (words separated by spaces, SMILES symbols joined)."""
        parts: list[str] = []
        current = ""
        for i in ids:
            token = self.tokens[int(i)]
            if skip_special and token in ("<pad>", "<bos>", "<eos>"):
                continue
            if token == "<s>":
                if current:
                    parts.append(current)
                current = ""
            elif token in self.words:
                if current:
                    parts.append(current)
                current = ""
                parts.append(token)
            else:
                current += token
        if current:
            parts.append(current)
        return " ".join(parts)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / "tokenizer.json"
        path.write_text(json.dumps({"tokens": self.tokens}, indent=0) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ReasoningTokenizer:
        path = Path(folder) / "tokenizer.json"
        try:
            data = json.loads(path.read_text())
            return cls(list(data["tokens"]))
        except FileNotFoundError:
            raise CheckpointError(path, "tokenizer.json is missing") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"tokenizer.json is corrupt ({exc})") from None
