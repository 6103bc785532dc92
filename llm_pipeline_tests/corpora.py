"""Corpora of many shapes for the split, dedup and leakage tests (and `benchmarks/split.py`).

Each generator is a plain function of a `random.Random`, so a seed gives the same corpus, and
the property tests draw their seeds and sizes from hypothesis. Words are pronounceable
pseudo-words from a fixed syllable table with common English function words mixed in, so the
default cleaning profile keeps the documents (they look like prose to Gopher's rules).

The shapes that share passages are the ones users bring and the first split broke on:

- `pool_corpus`: each document is 2-6 paragraphs drawn from a pool, each paragraph in a handful
  of documents (snippet libraries, support macros);
- `clause_corpus`: contracts from a clause library (a few clauses in many documents, most in a
  few) plus one paragraph of each document's own;
- `quote_chain_corpus`: e-mail threads whose every reply quotes the message before (`> ` lines);
- `star_corpus`: one shared footer in every document;
- `licence_corpus`: Debian-style copyright files, a few licence texts in hundreds of files.

And the shapes the split was built on: `distinct_corpus`, `near_copy_corpus`, `book_corpus`
(one long text cut into sections), `huge_docs_corpus` and `tiny_docs_corpus`.
"""

from __future__ import annotations

import random

_SYLLABLES = [
    c + v
    for c in ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "tr")
    for v in ("a", "e", "i", "o", "u", "ai", "ou")
]
_FUNCTION_WORDS = (
    "the of and to a in is it that was for on are with as be at by this from or".split()
)


def word(rng: random.Random) -> str:
    """A pseudo-word of 1-4 syllables (about 110 thousand possible words)."""
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))


def sentence(rng: random.Random, low: int = 6, high: int = 18) -> str:
    words = [
        rng.choice(_FUNCTION_WORDS) if rng.random() < 0.3 else word(rng)
        for _ in range(rng.randint(low, high))
    ]
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random, low: int = 3, high: int = 7) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(low, high)))


def distinct_corpus(rng: random.Random, n: int = 300) -> list[str]:
    """Documents that share nothing: 1-5 paragraphs each."""
    return ["\n\n".join(paragraph(rng) for _ in range(rng.randint(1, 5))) for _ in range(n)]


def pool_corpus(rng: random.Random, n: int = 300, pool: int | None = None) -> list[str]:
    """Each document is 2-6 distinct paragraphs from a pool of `pool` (default `n`), so each
    paragraph is in about four documents and every document is linked to many others."""
    paragraphs = [paragraph(rng) for _ in range(pool or n)]
    return ["\n\n".join(rng.sample(paragraphs, rng.randint(2, 6))) for _ in range(n)]


def clause_corpus(rng: random.Random, n: int = 600, clauses: int = 200) -> list[str]:
    """A clause library with Zipf popularity (the first clauses in many documents, most in a
    few): each document is 3-8 clauses and one paragraph of its own, in a random order."""
    library = [paragraph(rng, 2, 4) for _ in range(clauses)]
    weights = [1.0 / (rank + 1) for rank in range(clauses)]
    texts = []
    for _ in range(n):
        picked = {rng.choices(range(clauses), weights)[0] for _ in range(rng.randint(3, 8))}
        parts = [library[c] for c in picked] + [paragraph(rng)]
        rng.shuffle(parts)
        texts.append("\n\n".join(parts))
    return texts


def quote_chain_corpus(rng: random.Random, n: int = 300, longest: int = 12) -> list[str]:
    """E-mail threads: each reply is a new paragraph over the whole previous message quoted
    with `> ` on every line (as mail clients do), so a thread is one chain of containment."""
    days = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    texts: list[str] = []
    while len(texts) < n:
        previous = ""
        for _ in range(rng.randint(2, longest)):
            reply = paragraph(rng, 2, 5)
            if previous:
                quoted = "\n".join(("> " + line).rstrip() for line in previous.split("\n"))
                when = f"{rng.choice(days)} {rng.randint(1, 28)} June 2024 at {rng.randint(10, 23)}"
                who = f"{word(rng).capitalize()} {word(rng).capitalize()}"
                reply += f"\n\nOn {when}:{rng.randint(10, 59)}, {who} wrote:\n{quoted}"
            texts.append(reply)
            previous = reply
            if len(texts) == n:
                break
    return texts


def star_corpus(rng: random.Random, n: int = 300) -> list[str]:
    """One footer (a disclaimer of ~60 words) at the end of every document."""
    footer = paragraph(rng, 4, 4)
    return [paragraph(rng, 2, 8) + "\n\n" + footer for _ in range(n)]


def licence_corpus(rng: random.Random, n: int = 300, licences: int = 6) -> list[str]:
    """Debian-style copyright files: a header of the package's own and one of a few licence
    texts (the first ones in most files), indented one space with ` .` between paragraphs, as
    RFC 822-style fields hold them."""
    texts = [[paragraph(rng, 3, 5) for _ in range(rng.randint(3, 6))] for _ in range(licences)]
    weights = [1.0 / (rank + 1) ** 1.5 for rank in range(licences)]
    out = []
    for i in range(n):
        chosen = rng.choices(range(licences), weights)[0]
        body = "\n .\n".join(" " + p for p in texts[chosen])
        header = f"Files: *\nCopyright: {2000 + i % 25} {word(rng).capitalize()}\n"
        out.append(f"{header}Comment: {paragraph(rng, 2, 4)}\n\nLicense: L{chosen}\n{body}")
    return out


def near_copy_corpus(rng: random.Random, n: int = 300) -> list[str]:
    """Originals and edited copies of them (every tenth word replaced), 1-3 copies each."""
    texts: list[str] = []
    while len(texts) < n:
        original = "\n\n".join(paragraph(rng) for _ in range(rng.randint(1, 3)))
        texts.append(original)
        for _ in range(rng.randint(1, 3)):
            words = original.split(" ")
            texts.append(" ".join(word(rng) if k % 10 == 3 else w for k, w in enumerate(words)))
    return texts[:n]


def book_corpus(rng: random.Random, n: int = 60) -> list[str]:
    """One long book cut into `n` sections of about 4-8 kB (as `max_doc_chars` cuts it)."""
    return ["\n\n".join(paragraph(rng) for _ in range(rng.randint(8, 14))) for _ in range(n)]


def huge_docs_corpus(rng: random.Random, n: int = 6) -> list[str]:
    """A few very long documents of different lengths, and nothing else."""
    return ["\n\n".join(paragraph(rng) for _ in range(rng.randint(20, 120))) for _ in range(n)]


def tiny_docs_corpus(rng: random.Random, n: int = 600) -> list[str]:
    """Hundreds of one-sentence documents."""
    return [sentence(rng, 5, 12) for _ in range(n)]


SHARED_SHAPES = {
    "pool": pool_corpus,
    "clauses": clause_corpus,
    "quote_chains": quote_chain_corpus,
    "star": star_corpus,
    "licences": licence_corpus,
}
DISTINCT_SHAPES = {
    "distinct": distinct_corpus,
    "near_copies": near_copy_corpus,
    "book": book_corpus,
    "huge_docs": huge_docs_corpus,
    "tiny_docs": tiny_docs_corpus,
}
SHAPES = {**SHARED_SHAPES, **DISTINCT_SHAPES}
