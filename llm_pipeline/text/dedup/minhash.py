"""MinHash signatures of word n-gram shingles, vectorised with numpy over a whole batch.

A document's shingles are its overlapping word `ngram`s after lower-casing and deleting ASCII
punctuation (so "Hello, world" and "hello world" shingle alike). Each shingle is a 64-bit hash;
each of the `bands * rows` permutations is a multiply-shift hash `(a * s) >> 32`
(Dietzfelbinger) with a random odd 64-bit `a`, and a document's signature is the minimum of each
over its shingles. Two documents agree on one signature entry with probability equal to the
Jaccard similarity of their shingle sets, so agreement over all entries estimates it.

Locality-sensitive hashing: the signature is cut into `bands` bands of `rows` entries; two
documents whose band agrees entirely land in the same bucket, which happens with probability
1 - (1 - J^rows)^bands (an S-curve that rises near (1/bands)^(1/rows); 14 x 8 → about 0.72).
Candidates are then confirmed by the signature estimate against `threshold`, which keeps pairs
well below the threshold out even when they share a bucket by chance.

Word hashing runs over the UTF-8 bytes of the whole batch at once (no Python loop per word), so
the same text gives the same signature in every process, unlike Python's salted `hash()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 10, 11, 12, 13, 32, 0]] = True
_PUNCT_BYTES = bytes(range(33, 48)) + bytes(range(58, 65)) + bytes(range(91, 97))
_PUNCT_BYTES += bytes(range(123, 127))
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_BYTE_BASE = np.uint64(0x100000001B3)
# Shingles per numpy block: bounds the (permutations x shingles) temporary to ~15 MB.
_BLOCK_SHINGLES = 16_384
_GROUP_CHARS = 1_000_000


def _groups(texts: list[str]) -> Iterator[tuple[int, int]]:
    """(start, end) of consecutive groups of texts of about `_GROUP_CHARS` characters: the
    per-byte index arrays of word hashing cost ~40 bytes per character, so a group bounds the
    temporaries to ~40 MB."""
    start, size = 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= _GROUP_CHARS or i == len(texts) - 1:
            yield start, i + 1
            start, size = i + 1, 0


def _splitmix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: spreads every input bit over every output bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class MinHashConfig:
    """Near-duplicate settings: shingle size in words, LSH shape, and the Jaccard threshold
    above which two documents count as near-duplicates (confirmed on the signatures)."""

    ngram: int = 5
    bands: int = 14
    rows: int = 8
    threshold: float = 0.8
    seed: int = 1

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows


class MinHasher:
    """Computes signatures and band keys for batches of documents (same seed → same output)."""

    def __init__(self, config: MinHashConfig = MinHashConfig()) -> None:
        if config.ngram < 1 or config.bands < 1 or config.rows < 1:
            raise ValueError(f"minhash: ngram, bands and rows must be ≥ 1, got {config}")
        self.config = config
        rng = np.random.default_rng(config.seed)
        top = np.iinfo(np.uint64).max
        self.a = rng.integers(1, top, size=config.num_perm, dtype=np.uint64) | np.uint64(1)
        self.band_salt = _splitmix(np.arange(1, config.bands + 1, dtype=np.uint64))
        self._powers = np.cumprod(np.full(1024, _BYTE_BASE, dtype=np.uint64))

    def _word_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(word hashes, index of the document each word belongs to) for a batch."""
        encoded = [t.lower().encode("utf-8").translate(None, _PUNCT_BYTES) for t in texts]
        data = np.frombuffer(b"\x00".join(encoded), dtype=np.uint8)
        if len(data) == 0:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        doc_starts = np.cumsum(lengths + 1) - (lengths + 1)
        word_byte = ~_SPACE[data]
        edges = np.diff(word_byte.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = np.flatnonzero(edges == 1)
        if len(starts) == 0:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        ends = np.flatnonzero(edges == -1)
        positions = np.flatnonzero(word_byte)
        # Offset of each word byte inside its word: position minus its word's start.
        word_of_byte = np.repeat(np.arange(len(starts)), ends - starts)
        offset = positions - starts[word_of_byte]
        longest = int(offset.max()) + 1
        if longest > len(self._powers):
            self._powers = np.cumprod(np.full(longest, _BYTE_BASE, dtype=np.uint64))
        weighted = (data[positions].astype(np.uint64) + np.uint64(1)) * self._powers[offset]
        cuts = np.concatenate(([0], np.cumsum(ends - starts)[:-1]))
        words = _splitmix(np.add.reduceat(weighted, cuts) + (ends - starts).astype(np.uint64))
        docs = np.searchsorted(doc_starts, starts, side="right") - 1
        return words, docs

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(len(texts), bands * rows) uint32 signatures. A document with fewer words than
        `ngram` has one shingle, all its words; one with no words gets all-max (matches none).

        Texts are hashed in groups of about `_GROUP_CHARS` characters: the per-byte index arrays
        cost ~40 bytes per input byte, so a group bounds the temporaries to ~40 MB."""
        out = np.empty((len(texts), self.config.num_perm), np.uint32)
        for start, end in _groups(texts):
            out[start:end] = self._signatures(texts[start:end])
        return out

    def _signatures(self, texts: list[str]) -> np.ndarray:
        n = self.config.ngram
        sig = np.full((len(texts), self.config.num_perm), np.iinfo(np.uint32).max, np.uint32)
        words, docs = self._word_hashes(texts)
        if len(words) == 0:
            return sig
        count = len(words) - n + 1
        shingles = np.zeros(0, np.uint64)
        owners = np.zeros(0, np.int64)
        if count > 0:
            shingles = words[:count].copy()
            for k in range(1, n):
                shingles = shingles * _MIX + words[k : k + count]
            inside = docs[:count] == docs[n - 1 :]
            shingles, owners = _splitmix(shingles[inside]), docs[:count][inside]
        # Documents with words but no full n-gram: one shingle of all their words.
        per_doc = np.bincount(docs, minlength=len(texts))
        short = np.flatnonzero((per_doc > 0) & (per_doc < n))
        if len(short):
            first = np.searchsorted(docs, short)
            extra = np.zeros(len(short), np.uint64)
            for k in range(n - 1):
                take = k < per_doc[short]
                idx = np.minimum(first + k, len(words) - 1)
                extra = np.where(take, extra * _MIX + words[idx], extra)
            shingles = np.concatenate([shingles, _splitmix(extra)])
            owners = np.concatenate([owners, short])
            order = np.argsort(owners, kind="stable")
            shingles, owners = shingles[order], owners[order]
        # (permutations, shingles) layout: the per-document minimum runs along contiguous memory.
        # Multiply-shift takes the top 32 bits of a * s; as x -> x >> 32 is monotone, the minimum
        # is taken on the products and only the minima are shifted.
        buffer = np.empty((self.config.num_perm, _BLOCK_SHINGLES), dtype=np.uint64)
        for lo in range(0, len(shingles), _BLOCK_SHINGLES):
            block = shingles[lo : lo + _BLOCK_SHINGLES]
            block_owners = owners[lo : lo + _BLOCK_SHINGLES]
            values = buffer[:, : len(block)]
            np.multiply(self.a[:, None], block[None, :], out=values)
            cut = np.flatnonzero(np.diff(block_owners, prepend=-1))
            mins = (np.minimum.reduceat(values, cut, axis=1) >> np.uint64(32)).astype(np.uint32)
            rows = block_owners[cut]
            sig[rows] = np.minimum(sig[rows], mins.T)
        return sig

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """(documents, bands) uint64 bucket keys: one hash of each band's rows, salted per band
        so that equal rows in different bands never share a bucket."""
        bands, rows = self.config.bands, self.config.rows
        shaped = sig.reshape(len(sig), bands, rows).astype(np.uint64)
        key = np.zeros((len(sig), bands), dtype=np.uint64)
        for r in range(rows):
            key = key * _MIX + shaped[:, :, r] + np.uint64(1)
        return _splitmix(key ^ self.band_salt[None, :])


def normalized_words(text: str) -> list[bytes]:
    """A text's words as every word-based measure reads them: lower case, ASCII punctuation
    deleted (so `> Hello, world` and `hello world` read alike), split on whitespace."""
    return text.lower().encode("utf-8").translate(None, _PUNCT_BYTES).split()


_WORD_READER: MinHasher | None = None


def word_ngrams(
    texts: list[str], sizes: tuple[int, ...]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{n: (hashes, owners)}: the 64-bit hash of every word n-gram of each text (with
    repeats) and the index of the text it lies in, for each n in `sizes`. N-grams never cross
    from one text into the next. Words are read as MinHash reads them.

    Texts are read in groups of about `_GROUP_CHARS` characters (the per-byte temporaries cost
    ~40 bytes per character), so memory is bounded by the output, not the input."""
    global _WORD_READER
    if _WORD_READER is None:
        _WORD_READER = MinHasher(MinHashConfig(bands=1, rows=1))
    out: dict[int, tuple[list, list]] = {n: ([], []) for n in sizes}
    for start, end in _groups(texts):
        words, docs = _WORD_READER._word_hashes(texts[start:end])
        for n in sizes:
            count = len(words) - n + 1
            if count <= 0:
                continue
            h = words[:count].copy()
            for k in range(1, n):
                h = h * _MIX + words[k : k + count]
            inside = docs[:count] == docs[n - 1 :]
            out[n][0].append(_splitmix(h[inside]))
            out[n][1].append(docs[:count][inside] + start)
    return {
        n: (
            np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
            np.concatenate(owners) if owners else np.zeros(0, np.int64),
        )
        for n, (hashes, owners) in out.items()
    }


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Row-wise fraction of equal signature entries: the MinHash estimate of Jaccard similarity."""
    return (sig_a == sig_b).mean(axis=-1)


def shingle_jaccard(a: str, b: str, ngram: int = 5) -> float:
    """Exact Jaccard similarity of two texts' shingle sets (for tests and benchmarks)."""

    def shingles(text: str) -> set[tuple[str, ...]]:
        words = [w.decode() for w in normalized_words(text)]
        if len(words) < ngram:
            return {tuple(words)} if words else set()
        return {tuple(words[i : i + ngram]) for i in range(len(words) - ngram + 1)}

    sa, sb = shingles(a), shingles(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
