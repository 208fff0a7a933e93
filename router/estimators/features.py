"""Prompt features: hashed word and character n-grams, computed the same way when training and
when routing.

Hashing (``zlib.crc32``, signed, modulo ``n_features``) needs no vocabulary, so the artifact holds
weights only, and the same text always gives the same vector on every machine and Python
version (``hash()`` is salted per process; crc32 is not). Counts are log-scaled and the vector
is L2-normalised; two dense columns (log length in characters and in lines) follow the hashed
block.

A long prompt is featurised on ``max_chars`` of it: its first ones, or with ``tail`` its last
ones. A few-shot prompt (RouterBench's ARC-Challenge and Winogrande prompts: about 1,700 and 1,300
characters of examples shared by every prompt, then the question) is mostly its examples; from
the head the question is a small part of a vector L2-normalised over all of it, from the tail it
is most of it (within-task AUC on ARC-Challenge 0.48 from the whole prompt, 0.54-0.58 from
its last 300-1,000 characters, on the tuned share of the train files).

Example:
    >>> spec = FeatureSpec(n_features=4096, word_ngrams=2, char_ngrams=0)
    >>> index, value = featurize("Write a python function to add two numbers.", spec)
    >>> index.shape == value.shape
    True
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import asdict, dataclass

import numpy as np

_WORD = re.compile(r"\w+|[^\w\s]")
N_DENSE = 2


@dataclass(frozen=True)
class FeatureSpec:
    """Which n-grams are hashed into how many columns (``n_features`` hashed + ``N_DENSE``)."""

    n_features: int = 4096
    word_ngrams: int = 2        # 1: words; 2: words and word pairs
    char_ngrams: int = 0        # 0: none; k: character k-grams inside words
    max_chars: int = 4000       # longer prompts are featurised on max_chars of them:
    tail: bool = False          # their last ones (where a few-shot prompt's question is), else their first

    @property
    def width(self) -> int:
        return self.n_features + N_DENSE

    def to_dict(self) -> dict[str, int | bool]:
        out = asdict(self)
        if not self.tail:
            del out["tail"]  # the artifacts written before ``tail`` existed read the same
        return out


def _grams(text: str, spec: FeatureSpec) -> list[str]:
    words = _WORD.findall(text.lower())
    grams = list(words)
    for n in range(2, spec.word_ngrams + 1):
        grams += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    k = spec.char_ngrams
    if k:
        for word in words:
            padded = f"<{word}>"
            grams += [padded[i:i + k] for i in range(len(padded) - k + 1)]
    return grams


def featurize(text: str, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Sparse feature vector of ``text``: column indices (sorted, unique) and values."""
    clipped = text[-spec.max_chars:] if spec.tail else text[: spec.max_chars]
    counts: dict[int, float] = {}
    for gram in _grams(clipped, spec):
        h = zlib.crc32(gram.encode("utf-8"))
        column = h % spec.n_features
        counts[column] = counts.get(column, 0.0) + (1.0 if h & 0x80000000 else -1.0)
    index = np.fromiter(sorted(counts), dtype=np.int64, count=len(counts))
    raw = np.array([counts[i] for i in index], dtype=np.float64)
    value = np.sign(raw) * np.log1p(np.abs(raw))
    norm = math.sqrt(float(value @ value)) or 1.0
    dense = np.array([math.log1p(len(text)) / 8.0, math.log1p(text.count("\n")) / 4.0])
    return (np.concatenate([index, np.arange(spec.n_features, spec.width)]),
            np.concatenate([value / norm, dense]))


def feature_matrix(texts: list[str], spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR parts (``data, indices, indptr``) of the feature rows of ``texts``."""
    data, indices, indptr = [], [], [0]
    for text in texts:
        index, value = featurize(text, spec)
        data.append(value)
        indices.append(index)
        indptr.append(indptr[-1] + len(index))
    return (np.concatenate(data) if data else np.zeros(0), np.concatenate(indices) if indices else
            np.zeros(0, np.int64), np.array(indptr, dtype=np.int64))


__all__ = ["N_DENSE", "FeatureSpec", "feature_matrix", "featurize"]
