"""`validation_keys.json`: the split keys of a validation set, kept with the shards and with
every checkpoint trained on them.

Why: a checkpoint names its validation set (the split rule and the hash of its documents' keys,
`split.SplitSummary.identity`), which says whether two models were scored on the same text, but
not which documents they share once the split changed (the corpus grew, `val_fraction` or the
cleaning changed). With both models' keys the report compares a challenger and a champion on
the validation documents of both splits: text neither of them trained on. The keys are the
64-bit hashes of raw text (`split.split_key`), no text: about 20 bytes per validation document.

The file names the identity it belongs to, so a stale or mismatched file (another split, a run
killed between the shards and this file) is ignored rather than trusted.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llm_pipeline.atomic import write_json_atomic
from llm_pipeline.contracts import VERSION_KEY, ContractError, format_version, read_json_object
from llm_pipeline.text.split.sides import VAL, keys_digest

VALIDATION_KEYS_FILE = "validation_keys.json"
VALIDATION_KEYS_VERSION = 1


def validation_keys(files: Iterable[Path]) -> np.ndarray:
    """The split keys of the validation rows of cleaned Parquet parts, in table order."""
    keys = [np.zeros(0, np.uint64)]
    for path in files:
        parquet = pq.ParquetFile(path, pre_buffer=False)
        for batch in parquet.iter_batches(columns=["split_key", "split"], batch_size=65_536):
            is_val = pc.equal(batch.column(1), VAL)
            keys.append(batch.column(0).filter(is_val).to_numpy().astype(np.uint64))
    return np.concatenate(keys)


def write_validation_keys(file: Path, keys: np.ndarray, identity: dict) -> None:
    """Write the keys of the validation set `identity` names (atomically)."""
    write_json_atomic(
        file,
        {
            VERSION_KEY: VALIDATION_KEYS_VERSION,
            "rule": identity["rule"],
            "keys_sha256": identity["keys_sha256"],
            "keys": np.sort(keys.astype(np.uint64)).tolist(),
        },
    )


def read_validation_keys(file: Path, identity: dict | None) -> np.ndarray | None:
    """The sorted keys in `file` if it holds the validation set `identity` names, else None
    (no file, another set, keys that do not hash to the identity, an unreadable file)."""
    if not identity or not file.is_file():
        return None
    try:
        data = read_json_object(file, "validation keys")
        format_version(data, VALIDATION_KEYS_VERSION, file, "validation keys")
        keys = np.asarray(data["keys"], dtype=np.uint64)
    except (ContractError, KeyError, TypeError, ValueError, OverflowError):
        return None
    if keys.ndim != 1 or data.get("rule") != identity.get("rule"):
        return None
    if not data.get("keys_sha256") == identity.get("keys_sha256") == keys_digest(keys):
        return None
    return np.sort(keys)


def shared_validation_texts(
    files: Iterable[Path], keys: np.ndarray, max_bytes: int
) -> tuple[list[str], int]:
    """The validation documents of the cleaned parts whose key is in `keys` (sorted), in table
    order, until `max_bytes` of UTF-8 (at least one document): (texts, bytes).

    Row group by row group, the keys and sides are read first and the text only of the
    matching rows, so a large corpus with few shared documents costs its key columns."""
    texts: list[str] = []
    size = 0
    if len(keys) == 0:
        return texts, size
    for path in files:
        parquet = pq.ParquetFile(path, pre_buffer=False)
        for group in range(parquet.num_row_groups):
            sides = parquet.read_row_group(group, columns=["split", "split_key"])
            batch_keys = sides.column("split_key").to_numpy().astype(np.uint64)
            at = np.minimum(np.searchsorted(keys, batch_keys), len(keys) - 1)
            is_val = sides.column("split").to_numpy(zero_copy_only=False) == VAL
            rows = np.flatnonzero(is_val & (keys[at] == batch_keys))
            if len(rows) == 0:
                continue
            column = parquet.read_row_group(group, columns=["text"]).column("text")
            for text in column.take(rows).to_pylist():
                if texts and size >= max_bytes:
                    return texts, size
                texts.append(text)
                size += len(text.encode("utf-8", "surrogatepass"))
    return texts, size
