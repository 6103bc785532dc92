"""A deterministic synthetic corpus for the benchmarks: English-like text with realistic dirt.

Shared by `clean.py` and `tokenize.py` so both measure the same kind of input. Words come from a
Zipf-distributed vocabulary (common English words first, then pronounceable pseudo-words, with a
few accented words, curly quotes and dashes so most documents are not pure ASCII). Word ids,
punctuation and capitalisation are drawn with numpy for a whole chunk of documents at once;
Python only joins ready-made tokens, so generating is much faster than cleaning.

The mix of documents, by share of the count:

- ~85% ordinary prose of log-normally varied length (tens of words to tens of thousands);
  a tenth of these are messy (`\\r\\n`, trailing spaces and tabs, a BOM, control characters,
  runs of blank lines) and 1% are in Unicode NFD, which normalisation has to recompose;
- ~5% exact copies of an earlier document (what exact dedup should remove);
- ~4% junk (too few characters or words);
- ~3% symbol-heavy documents (ASCII tables, separator lines, noise);
- ~3% documents made mostly of one repeated line (boilerplate), some under the threshold.
"""

from __future__ import annotations

import json
import shutil
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from llm_pipeline.text.read.readers import Document
from llm_pipeline.text.store import write_documents

# Bump when the generator changes, so cached corpora under benchmarks/.work are not reused.
GENERATOR_VERSION = 1
WORK_DIR = Path(__file__).resolve().parent / ".work"

# Word lists as text (one `split()` away from a list), so they stay compact and readable.
_COMMON_WORDS = """
the of and to a in is it you that he was for on are with as I his they be at one have this from or
had by not word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing
see him two has look more day could go come did number sound no most people my over know water than
call first who may down side been now find any new work part take get place made live where after
back little only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand port large spell add
even land here must big high such follow act why ask men change went light kind off need house
picture try us again animal point mother world near build self earth father head stand own page
should country found answer school grow study still learn plant cover food sun four between state
keep eye never last let thought city tree cross farm hard start might story saw far sea draw left
late run while press close night real life few north open seem together next white children begin
got walk example ease paper group always music those both mark often letter until mile river car
feet care second book carry took science eat room friend began idea fish mountain stop once base
hear horse cut sure watch color face wood main enough plain girl usual young ready above ever red
list though feel talk bird soon body dog family direct pose leave song measure door product black
short numeral class wind question happen complete ship area half rock order fire south problem
piece told knew pass since top whole king space heard best hour better true during hundred five
remember step early hold west ground interest reach fast verb sing listen six table travel less
morning ten simple several vowel toward war lay against pattern slow center love person money serve
appear road map rain rule govern pull cold notice voice unit power town fine certain fly fall lead
cry dark machine note wait plan figure star box noun field rest correct able pound done beauty
drive stood contain front teach week final gave green oh quick develop ocean warm free minute
strong special mind behind clear tail produce fact street inch multiply nothing course stay wheel
full force blue object decide surface deep moon island foot system busy test record boat common
gold possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss
brought heat snow tire bring yes distant fill east paint language among
"""
_ACCENTED_WORDS = """
café naïve résumé façade Zürich São München jalapeño fiancée über Ångström señor piñata Dvořák Łódź
smörgåsbord crème brûlée déjà touché élan rôle coöperate Málaga Kraków “quoted” —
"""
_ONSETS = ["", "b", "br", "c", "ch", "d", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "pr"]
_ONSETS += ["r", "s", "sh", "st", "t", "th", "tr", "v", "w", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "ou", "y"]
_CODAS = ["", "", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"]
# Pseudo-words containing these are skipped, so the benchmark text stays presentable.
_BLOCKED = ("shit", "fuk", "fuc", "cunt", "piss", "dic", "coc", "slut", "tit", "cum", "fag", "nig")

# Per-token suffixes; the last token of a document always gets the final one.
_SUFFIXES = (" ", ", ", ". ", ".\n", ".\n\n", "? ", "; ", ".")
_SUFFIX_P = np.array([0.855, 0.06, 0.055, 0.012, 0.008, 0.005, 0.005, 0.0])
_SENTENCE_END = np.array([False, False, True, True, True, True, False, True])
_JUNK = (
    "",
    "   ",
    "\n\n",
    "ok",
    "Click here",
    "404 Not Found",
    "see more >>",
    "Loading...",
    "thanks!!",
    "N/A",
    "Home | About",
    "lorem ipsum",
    # Long enough to pass the character minimum, but fewer than three words.
    "https://example.com/shop/item?id=4242&ref=home",
    "Copyright-2024-All-Rights-Reserved",
    "Read more: supercalifragilisticexpialidocious",
)
_SYMBOLS = np.array(list("#*=-_|+<>~^@%&$/\\[]{}()!?:;.,'\"`0123456789"))
_BOILERPLATE = (
    "Subscribe to our newsletter for the latest updates.",
    "All rights reserved.",
    "Share this on Facebook | Twitter | Email",
    "Posted by admin in Uncategorized",
    "Accept cookies to continue browsing this site.",
)


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    words = list(dict.fromkeys(_COMMON_WORDS.split()))
    seen = set(words)
    while len(words) < size:
        syllables = int(rng.choice([1, 2, 3], p=[0.45, 0.45, 0.1]))
        word = "".join(
            _ONSETS[rng.integers(len(_ONSETS))]
            + _VOWELS[rng.integers(len(_VOWELS))]
            + _CODAS[rng.integers(len(_CODAS))]
            for _ in range(syllables)
        )
        if len(word) > 1 and word not in seen and not any(b in word for b in _BLOCKED):
            seen.add(word)
            words.append(word)
    # Accented words at middling ranks: frequent enough that about half the documents have one.
    for i, word in enumerate(_ACCENTED_WORDS.split()):
        words.insert(200 + 60 * i, word)
    return words[:size]


class SyntheticCorpus:
    """Deterministic document stream for a seed; `documents(n_bytes)` yields about that much."""

    def __init__(self, seed: int = 0, vocab_size: int = 8000, chunk_docs: int = 2000) -> None:
        self.rng = np.random.default_rng(seed)
        words = _vocabulary(self.rng, vocab_size)
        ranks = np.arange(len(words), dtype=np.float64)
        weights = 1.0 / (ranks + 2.7)  # Zipf-Mandelbrot, like word frequencies in real text
        self.word_cdf = np.cumsum(weights / weights.sum())
        self.suffix_cdf = np.cumsum(_SUFFIX_P / _SUFFIX_P.sum())
        # tokens[(capitalised * n_suffixes + suffix) * vocab + word]: every token pre-built once.
        table = [
            (w[:1].upper() + w[1:] if cap else w) + s
            for cap in (False, True)
            for s in _SUFFIXES
            for w in words
        ]
        self.tokens = np.array(table, dtype=object)
        self.vocab = len(words)
        self.chunk_docs = chunk_docs
        self.recent: list[str] = []  # ring buffer of documents that duplicates are copied from

    def documents(self, n_bytes: int) -> Iterator[Document]:
        """Yield documents until at least `n_bytes` of UTF-8 text has been produced."""
        produced = 0
        index = 0
        while produced < n_bytes:
            for text in self._chunk():
                yield Document(f"web/crawl-{index // 5000:04d}.jsonl", text)
                produced += len(text.encode("utf-8"))
                index += 1
                if produced >= n_bytes:
                    return

    def _prose(self, n_docs: int) -> list[str]:
        rng = self.rng
        lengths = np.clip(rng.lognormal(np.log(250), 1.0, n_docs), 8, 20_000).astype(np.int64)
        total = int(lengths.sum())
        ends = np.cumsum(lengths)
        starts = ends - lengths
        word = np.searchsorted(self.word_cdf, rng.random(total))
        word = np.minimum(word, self.vocab - 1)
        suffix = np.searchsorted(self.suffix_cdf, rng.random(total))
        suffix[ends - 1] = len(_SUFFIXES) - 1
        capital = np.empty(total, dtype=bool)
        capital[1:] = _SENTENCE_END[suffix[:-1]]
        capital[starts] = True
        codes = (capital * len(_SUFFIXES) + suffix) * self.vocab + word
        tokens = self.tokens[codes]
        return ["".join(tokens[s:e].tolist()) for s, e in zip(starts.tolist(), ends.tolist())]

    def _messy(self, text: str) -> str:
        rng = self.rng
        text = text.replace("\n", " \t\r\n")
        cut = int(rng.integers(len(text) + 1))
        control = "\x00\x07\x0b\x0c\x1b\x7f\x85"[int(rng.integers(7))]
        return "\ufeff" + text[:cut] + control + text[cut:] + "  \r\n\r\n\r\n\r\n"

    def _symbols(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            cols = int(rng.integers(3, 8))
            rows = int(rng.integers(5, 60))
            row = "|" + "|".join(["-" * int(rng.integers(3, 12))] * cols) + "|"
            cells = "| " + " | ".join(["%.2f"] * cols) + " |"
            lines = [row if i % 2 == 0 else cells % tuple(rng.random(cols)) for i in range(rows)]
            return "\n".join(lines)
        n = int(rng.integers(50, 3000))
        chars = _SYMBOLS[rng.integers(len(_SYMBOLS), size=n)]
        chars[rng.random(n) < 0.08] = " "
        return "".join(chars.tolist())

    def _repeated(self, prose: str) -> str:
        rng = self.rng
        line = _BOILERPLATE[int(rng.integers(len(_BOILERPLATE)))]
        unique = [s for s in prose.split(". ")[: int(rng.integers(2, 12))] if s]
        lines = unique + [line] * int(rng.integers(3, 40))
        rng.shuffle(lines)
        return "\n".join(lines)

    def _chunk(self) -> list[str]:
        rng = self.rng
        n = self.chunk_docs
        kind = rng.random(n)
        prose = self._prose(n)
        out = []
        for i, text in enumerate(prose):
            k = kind[i]
            if k < 0.05 and self.recent:
                text = self.recent[int(rng.integers(len(self.recent)))]
            elif k < 0.09:
                text = _JUNK[int(rng.integers(len(_JUNK)))]
            elif k < 0.12:
                text = self._symbols()
            elif k < 0.15:
                text = self._repeated(text)
            else:
                if k < 0.235:
                    text = self._messy(text)
                elif k < 0.245:
                    text = unicodedata.normalize("NFD", text)
                if len(self.recent) < 4096:
                    self.recent.append(text)
                else:
                    self.recent[int(rng.integers(4096))] = text
            out.append(text)
        return out


def corpus_dir(mb: float, seed: int) -> Path:
    """Where the document parts for this size and seed are cached."""
    return WORK_DIR / f"docs-{mb:g}mb-seed{seed}-v{GENERATOR_VERSION}"


def ensure_documents(mb: float, seed: int, log=print) -> tuple[Path, dict]:
    """Generate (or reuse) a document Parquet corpus of about `mb` MB; return (folder, info)."""
    folder = corpus_dir(mb, seed)
    done = folder / "done.json"
    if done.is_file():
        info = json.loads(done.read_text())
        log(f"reusing {folder.relative_to(WORK_DIR.parent)} ({info['mb']:.1f} MB)")
        return folder, info
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    corpus = SyntheticCorpus(seed)
    n_bytes = 0

    def counted() -> Iterator[Document]:
        nonlocal n_bytes
        for doc in corpus.documents(int(mb * 1e6)):
            n_bytes += len(doc.text.encode("utf-8"))
            yield doc

    rows = write_documents(counted(), folder)
    seconds = time.perf_counter() - started
    disk = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    info = {"docs": rows, "mb": n_bytes / 1e6, "disk_mb": disk / 1e6, "seconds": seconds}
    done.write_text(json.dumps(info))
    log(
        f"generated {folder.relative_to(WORK_DIR.parent)}: {rows} docs, {n_bytes / 1e6:.1f} MB "
        f"({disk / 1e6:.1f} MB on disk) in {seconds:.1f}s ({n_bytes / 1e6 / seconds:.0f} MB/s)"
    )
    return folder, info
