"""Text normalisation, word n-gram shingles, and their 64-bit hashes.

Normalisation makes the variants that should count as one text identical: Vietnamese arrives in
both NFC and NFD (and NFD shingles share nothing with NFC ones), case differs, punctuation and
whitespace wander. Words are runs of letters, numbers, underscores and combining marks; every other
character separates words. Vietnamese writes one syllable per space-separated word, so word
n-grams are syllable n-grams.

`shingle_hashes` normalises, splits and hashes a whole batch of texts in numpy (see the hashing
section); `words`, `shingles` and `shingle_hash` are the one-text forms of the same thing.
`jaccard` compares two texts exactly.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Sequence
from functools import partial

import numpy as np
import regex

# Unicode word characters (the `regex` module's `\w` includes combining marks, so Devanagari vowel
# signs stay inside their word) plus every number character (H₂O, cm², ½ stay one word).
_WORD = regex.compile(r"[\w\p{N}]+")
_nfc = partial(unicodedata.normalize, "NFC")


def _fold(text: str) -> str:
    """NFC, case-folded, NFC again (case folding can decompose, e.g. "İ" -> "i" + dot above).
    NFD and NFC inputs fold alike, and text that is already NFC passes NFC's quick check."""
    return _nfc(_nfc(text).casefold())


def words(text: str) -> list[str]:
    """The normalised words of `text`: NFC, case-folded, split at whitespace and punctuation."""
    return _WORD.findall(_fold(text))


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


def jaccard(a: str, b: str, ngram: int = 0) -> float:
    """Exact Jaccard similarity of the two texts' shingle sets (what MinHash estimates); n-gram
    size `ngram`, or from the pair's mean length when 0. Two texts without words are identical (1)."""
    n = ngram or choose_ngram((len(words(a)) + len(words(b))) / 2)
    sa, sb = shingles(a, n), shingles(b, n)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 1.0


# --- hashing ----------------------------------------------------------------------------------
#
# Hashing runs in numpy over the code points of a whole chunk of texts at once, so no Python
# object is made per word or shingle. A word's hash is a polynomial hash of its code points mod
# 2^64, finalised with MurmurHash3's fmix64; an n-gram's hash folds its words' hashes in order.
# `shingle_hash` is the same computation for one shingle, in plain Python (the tests hold the two
# to each other, and datasketch's own MinHash to it).

_MASK64 = (1 << 64) - 1
_BASE = 0x100000001B3  # odd, so it has an inverse mod 2^64 (FNV's 64-bit prime)
_BASE_INV = pow(_BASE, -1, 1 << 64)
_LEN = 0x9E3779B97F4A7C15  # mixes the word length in (2^64 / golden ratio)
_FOLD = 0xBF58476D1CE4E5B9  # odd multiplier of the n-gram fold (splitmix64's)
_SEP = "\x00"  # joins a chunk's texts; not a word character, so it never lands inside a word


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser on a uint64 array (wrapping multiplication is intended)."""
    h = h ^ (h >> np.uint64(33))
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    out: np.ndarray = h ^ (h >> np.uint64(33))
    return out


def field_salt(field: int) -> int:
    """Start value of the n-gram fold for key field number `field`: shingles of different fields
    never share a hash, so one row's chosen text is never matched against another's rejected."""
    return _fmix64_int((field + 1) * _LEN & _MASK64)


def word_hash(word: str) -> int:
    """64-bit hash of one normalised word: fmix64(sum c_i * BASE^i + len * LEN mod 2^64)."""
    h = 0
    for i, ch in enumerate(word):
        h = (h + ord(ch) * pow(_BASE, i, 1 << 64)) & _MASK64
    return _fmix64_int((h + len(word) * _LEN) & _MASK64)


def shingle_hash(shingle: str, field: int = 0) -> int:
    """64-bit hash of one shingle (normalised words joined by single spaces) of key field `field`:
    h = salt(field); for each word w: h = (h XOR word_hash(w)) * FOLD mod 2^64; then fmix64."""
    h = field_salt(field)
    for w in shingle.split(" "):
        h = ((h ^ word_hash(w)) * _FOLD) & _MASK64
    return _fmix64_int(h)


# Whether each code point is a word character (exactly `_WORD`'s class): 1, 0, or -1 for not
# looked up yet. Filled on demand (a corpus uses a few thousand code points of 1.1 million).
_word_char = np.full(sys.maxunicode + 1, -1, dtype=np.int8)


def _is_word_char(cps: np.ndarray) -> np.ndarray:
    flags: np.ndarray = _word_char[cps]
    unknown = flags < 0
    if unknown.any():
        new = np.unique(cps[unknown])
        found = np.zeros(len(new), dtype=np.int8)
        for m in _WORD.finditer("".join(map(chr, new.tolist()))):  # the class is per character
            found[m.start() : m.end()] = 1
        _word_char[new] = found
        flags = _word_char[cps]
    return flags.astype(bool)


_powers_cache: dict[int, np.ndarray] = {}


def _powers(base: int, count: int) -> np.ndarray:
    """base^0 .. base^(count-1) mod 2^64 (uint64 products wrap); cached, grown by doubling."""
    cached = _powers_cache.get(base)
    if cached is None or len(cached) < count:
        p = np.full(max(count, 2 * len(cached) if cached is not None else 1 << 16), base, dtype=np.uint64)
        p[0] = 1
        cached = _powers_cache[base] = np.cumprod(p, dtype=np.uint64)
    return cached[:count]


def _word_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every normalised word of every text, in order, and each text's word count."""
    # `_fold` of the joined texts (NUL composes with nothing, so this folds each text alike).
    # NFC text by text first: one NFD text would send the whole chunk down NFC's slow path.
    joined = _SEP.join(map(_nfc, texts))
    if joined.count(_SEP) != max(len(texts) - 1, 0):  # a text holds the separator itself
        joined = _SEP.join(t.replace(_SEP, " ") for t in map(_nfc, texts))
    joined = _nfc(joined.casefold())
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    is_word = _is_word_char(cps)
    edges = np.diff(is_word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    seps = np.flatnonzero(cps == ord(_SEP))
    counts = np.diff(np.searchsorted(starts, np.concatenate([[0], seps, [len(cps)]])))
    # sum over a word of c_i * BASE^(i - start) = (S[end] - S[start]) * BASE^-start, S the prefix
    # sums of c_i * BASE^i: one cumsum for the whole chunk.
    prefix = np.zeros(len(cps) + 1, dtype=np.uint64)
    np.cumsum(cps.astype(np.uint64) * _powers(_BASE, len(cps)), out=prefix[1:])
    raw = (prefix[ends] - prefix[starts]) * _powers(_BASE_INV, len(cps) + 1)[starts]
    return fmix64(raw + (ends - starts).astype(np.uint64) * np.uint64(_LEN)), counts


def word_counts(texts: Sequence[str]) -> np.ndarray:
    """How many normalised words each text has (`len(words(t))` for each, in bulk)."""
    return _word_hashes(texts)[1]


def shingle_hashes(texts: Sequence[str], n: int, field: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram shingle hashes of many texts at once (see `shingle_hash`).

    Returns `(hashes, offsets)`: the uint64 hashes of text i are `hashes[offsets[i]:offsets[i+1]]`
    (a repeated n-gram repeats; callers that need sets take `np.unique`).
    """
    word_h, lengths = _word_hashes(texts)
    starts = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    # Shingles per text: len-n+1 n-grams, or one shingle of all its words when shorter than n.
    counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    text_of = np.repeat(np.arange(len(texts)), counts)
    first_word = starts[:-1][text_of] + (np.arange(total) - offsets[:-1][text_of])
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
