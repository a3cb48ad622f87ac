"""Easy Data Augmentation for text (Wei & Zou 2019, "EDA", EMNLP): four word-level operations.

- synonym replacement (SR): replace ``n`` words that have synonyms with a random synonym;
- random insertion (RI): insert ``n`` known words (a synonym of a word in the text when the
  synonym list has one, else a random word of the training vocabulary);
- random swap (RS): swap two random words, ``n`` times;
- random deletion (RD): delete each word with probability ``p``.

``n = max(1, round(alpha * len(words)))`` as in the paper. Each call applies one operation
chosen at random among the enabled ones (the paper makes several augmented copies per
sentence offline; online, one random operation per example per epoch plays that role).
Randomness comes only from the ``random.Random`` passed in, which the DataModule seeds from
``(seed, epoch, example index)``, so a resumed run augments exactly like an uninterrupted one.

Synonym file format: one group of synonyms per line, words separated by commas or whitespace;
every word of a line is a synonym of the others. Lines starting with ``#`` are comments::

    good, fine, great
    film movie picture
"""

from __future__ import annotations

import random
from pathlib import Path


def load_synonyms(path: str | Path) -> dict[str, list[str]]:
    """Read a synonym file (see the module docstring) into ``word -> [synonyms]`` (lowercased)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"synonym file {path} does not exist. Give a text file with one synonym group a line.")
    synonyms: dict[str, set[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        group = [w.lower() for w in line.replace(",", " ").split()]
        for word in group:
            synonyms.setdefault(word, set()).update(w for w in group if w != word)
    return {word: sorted(others) for word, others in synonyms.items() if others}


class EDA:
    """Word-level text augmentation (Wei & Zou 2019) on lists of words.

    Shapes: ``list[str]`` words in, ``list[str]`` words out (never empty if the input was not).

    Example config (inside the text DataModule)::

        data:
          class_path: ssl_lightning.data.text.TextClassificationDataModule
          init_args:
            augment: {alpha_sr: 0.1, alpha_ri: 0.1, alpha_rs: 0.1, p_rd: 0.1, synonyms_file: synonyms.txt}

    Args:
        alpha_sr: share of words replaced by synonyms (0 disables; needs ``synonyms_file``).
        alpha_ri: share of words inserted (0 disables).
        alpha_rs: share of words swapped (0 disables).
        p_rd: probability of deleting each word (0 disables).
        p_augment: probability that an example is augmented at all.
        synonyms_file: the user's synonym list (format in the module docstring).
    """

    def __init__(
        self,
        alpha_sr: float = 0.1,
        alpha_ri: float = 0.1,
        alpha_rs: float = 0.1,
        p_rd: float = 0.1,
        p_augment: float = 1.0,
        synonyms_file: str | None = None,
    ) -> None:
        for name, value in [("alpha_sr", alpha_sr), ("alpha_ri", alpha_ri), ("alpha_rs", alpha_rs), ("p_rd", p_rd)]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= p_augment <= 1.0:
            raise ValueError(f"p_augment must be in [0, 1], got {p_augment}")
        if alpha_sr > 0 and synonyms_file is None:
            raise ValueError("alpha_sr > 0 needs a synonyms_file (one synonym group per line); or set alpha_sr: 0.")
        self.alpha_sr = alpha_sr
        self.alpha_ri = alpha_ri
        self.alpha_rs = alpha_rs
        self.p_rd = p_rd
        self.p_augment = p_augment
        self.synonyms = load_synonyms(synonyms_file) if synonyms_file is not None else {}
        #: Words that random insertion may use when a word has no synonym; the DataModule sets it
        #: to the training vocabulary.
        self.known_words: list[str] = []

    @property
    def operations(self) -> list[str]:
        ops = [("sr", self.alpha_sr), ("ri", self.alpha_ri), ("rs", self.alpha_rs), ("rd", self.p_rd)]
        return [name for name, value in ops if value > 0]

    def __call__(self, words: list[str], rng: random.Random) -> list[str]:
        ops = self.operations
        if not words or not ops or rng.random() >= self.p_augment:
            return list(words)
        op = ops[rng.randrange(len(ops))]
        if op == "sr":
            return synonym_replacement(words, self.synonyms, _count(self.alpha_sr, words), rng)
        if op == "ri":
            return random_insertion(words, self.synonyms, self.known_words, _count(self.alpha_ri, words), rng)
        if op == "rs":
            return random_swap(words, _count(self.alpha_rs, words), rng)
        return random_deletion(words, self.p_rd, rng)


def _count(alpha: float, words: list[str]) -> int:
    return max(1, round(alpha * len(words)))


def synonym_replacement(words: list[str], synonyms: dict[str, list[str]], n: int, rng: random.Random) -> list[str]:
    """Replace up to ``n`` distinct words that have synonyms (EDA's SR)."""
    out = list(words)
    candidates = [i for i, w in enumerate(out) if w.lower() in synonyms]
    rng.shuffle(candidates)
    for i in candidates[:n]:
        options = synonyms[out[i].lower()]
        out[i] = options[rng.randrange(len(options))]
    return out


def random_insertion(
    words: list[str], synonyms: dict[str, list[str]], known_words: list[str], n: int, rng: random.Random
) -> list[str]:
    """Insert ``n`` words at random positions: a synonym of a random word of the text if it has
    one (EDA's RI), else a random known word; unchanged if neither exists."""
    out = list(words)
    for _ in range(n):
        with_synonyms = [w for w in out if w.lower() in synonyms]
        if with_synonyms:
            options = synonyms[with_synonyms[rng.randrange(len(with_synonyms))].lower()]
        elif known_words:
            options = known_words
        else:
            return out
        out.insert(rng.randrange(len(out) + 1), options[rng.randrange(len(options))])
    return out


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    """Swap two random positions ``n`` times (EDA's RS)."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.randrange(len(out)), rng.randrange(len(out))
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    """Delete each word with probability ``p``; keep one random word if all would go (EDA's RD)."""
    if len(words) <= 1:
        return list(words)
    out = [w for w in words if rng.random() >= p]
    return out if out else [words[rng.randrange(len(words))]]
