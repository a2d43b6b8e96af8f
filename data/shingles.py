"""Text normalisation, word n-gram shingles, and their 64-bit hashes.

Normalisation makes the variants that should count as one text identical: Vietnamese arrives in
both NFC and NFD (and NFD shingles share nothing with NFC ones), case differs, punctuation and
whitespace wander. Words are runs of letters, numbers, underscores and combining marks; every other
character separates words. Vietnamese writes one syllable per space-separated word, so word
n-grams are syllable n-grams.

Hashing is vectorised: each distinct word is hashed once with xxh3-64, and an n-gram's hash is a
fold of its words' hashes (see `shingle_hash`, the one-shingle reference the tests check the
vectorised path against).
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

import numpy as np
import regex
import xxhash


# Unicode word characters (the `regex` module's `\w` includes combining marks, so Devanagari vowel
# signs stay inside their word) plus every number character (H₂O, cm², ½ stay one word).
_WORD = regex.compile(r"[\w\p{N}]+")


def words(text: str) -> list[str]:
    """The normalised words of `text`: caseless-matching form (NFD, casefold), recomposed to NFC,
    split at whitespace and punctuation."""
    return _WORD.findall(unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold()))


def normalize(text: str) -> str:
    """`text` in the form shingles are taken from: NFC, case-folded, words joined by one space."""
    return " ".join(words(text))


def choose_ngram(word_count: float) -> int:
    """Shingle size for texts of about `word_count` words: short prompts need small n (one changed
    word in an 8-word prompt already removes every 3-gram it touches), long texts need larger n
    so that shared common words alone do not make two texts look alike."""
    if word_count <= 10:
        return 1
    if word_count <= 50:
        return 2
    if word_count <= 200:
        return 3
    return 5


def _ngrams(seq: Sequence[str], n: int) -> list[tuple[str, ...]]:
    if len(seq) <= n:
        return [tuple(seq)] if seq else []  # a text shorter than n is one shingle
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def shingles(text: str, n: int) -> set[str]:
    """The set of word n-grams of normalised `text`, each as its words joined by one space.
    A text of fewer than `n` words is one shingle; an empty text has none."""
    if n < 1:
        raise ValueError(f"n-gram size must be at least 1, got {n}")
    return {" ".join(g) for g in _ngrams(words(text), n)}


# --- hashing ----------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
# Odd multiplier of the fold (2^64 / golden ratio): one multiply per word keeps n-grams ordered.
_FOLD = 0x9E3779B97F4A7C15


def field_salt(field: int) -> int:
    """Start value of the fold for key field number `field`: shingles of different fields never
    share a hash, so (say) a row's chosen text is never matched against another row's rejected."""
    return xxhash.xxh3_64_intdigest(f"prefkit.field.{field}".encode())


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def shingle_hash(shingle: str, field: int = 0) -> int:
    """64-bit hash of one shingle (its words joined by single spaces) of key field `field`.

    Reference implementation, one shingle at a time, of what `shingle_hashes` computes in bulk:
    h = salt(field); for each word w: h = (h XOR xxh3_64(w)) * FOLD mod 2^64; then the
    MurmurHash3 64-bit finaliser.
    """
    h = field_salt(field)
    for w in shingle.split(" "):
        h = ((h ^ xxhash.xxh3_64_intdigest(w.encode())) * _FOLD) & _MASK64
    return _fmix64_int(h)


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser on a uint64 array (wrapping multiplication is intended)."""
    h = h ^ (h >> np.uint64(33))
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


class WordHasher:
    """Hashes each distinct word once; a worker keeps one for all its chunks (a language has a
    few tens of thousands of distinct words, a corpus millions of word occurrences)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._hashes: list[int] = []

    def hash_words(self, word_list: list[str]) -> np.ndarray:
        ids = self._ids
        new = [w for w in set(word_list) if w not in ids]
        for w in new:
            ids[w] = len(self._hashes)
            self._hashes.append(xxhash.xxh3_64_intdigest(w.encode()))
        table = np.array(self._hashes, dtype=np.uint64)
        return table[np.fromiter(map(ids.__getitem__, word_list), dtype=np.int64, count=len(word_list))]


def shingle_hashes(
    word_lists: Sequence[list[str]], n: int, field: int = 0, hasher: WordHasher | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram shingle hashes of many texts at once (see `shingle_hash`).

    Returns `(hashes, offsets)`: uint64 hashes of text i are `hashes[offsets[i]:offsets[i+1]]`
    (repeated n-grams repeat; callers that need sets take `np.unique`).
    """
    hasher = hasher or WordHasher()
    lengths = np.fromiter(map(len, word_lists), dtype=np.int64, count=len(word_lists))
    flat = [w for ws in word_lists for w in ws]
    word_h = hasher.hash_words(flat)
    starts = np.zeros(len(word_lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    # Shingles per text: len-n+1 n-grams, or one shingle of all its words when shorter than n.
    counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
    offsets = np.zeros(len(word_lists) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    text_of = np.repeat(np.arange(len(word_lists)), counts)
    first_word = starts[text_of] + (np.arange(total) - offsets[text_of])
    width = np.minimum(lengths[text_of], n)  # words in each shingle
    h = np.full(total, field_salt(field), dtype=np.uint64)
    fold = np.uint64(_FOLD)
    for j in range(n):
        live = width > j
        if live.all():
            h = (h ^ word_h[first_word + j]) * fold
        else:
            h[live] = (h[live] ^ word_h[first_word[live] + j]) * fold
    return fmix64(h), offsets
