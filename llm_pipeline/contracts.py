"""Versioned JSON files that one stage or process writes and another reads.

Each contract (the trainer's job file, the checkpoint's `config.json`, the raw manifest) is a
dataclass with a `format_version`. A reader accepts its own version and upgrades older ones it
knows; a file from a newer version of the pipeline is refused with its name and version rather
than misread. A file written before versions existed counts as version 0.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from llm_pipeline.errors import PipelineInputError
from llm_pipeline.safe_open import UnsafeFileError, read_bytes

VERSION_KEY = "format_version"


class ContractError(PipelineInputError):
    """A contract file that is missing, malformed, or of a version this code cannot read."""


def read_json_object(
    file: Path, what: str, error: type[PipelineInputError] = ContractError
) -> dict[str, Any]:
    """The JSON object in `file`, or `error` naming the file and why it cannot be read."""
    try:  # one no-follow descriptor: a planted symlink or FIFO is refused, never followed/waited on
        data = json.loads(read_bytes(file))
    except UnsafeFileError as exc:
        raise error(f"{file}: {exc.reason} ({what})") from None
    except FileNotFoundError:
        raise error(f"{file}: missing ({what})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{file}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise error(f"{file}: cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{file}: must be a JSON object, not {type(data).__name__}")
    return data


def format_version(
    data: dict[str, Any],
    current: int,
    file: Path | str,
    what: str,
    error: type[PipelineInputError] = ContractError,
) -> int:
    """The file's format version (0 when it has none); newer than `current` is refused."""
    version = data.get(VERSION_KEY, 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise error(f"{file}: {what} has an invalid {VERSION_KEY} {version!r}")
    if version > current:
        raise error(
            f"{file}: {what} has format version {version}, newer than the {current} this "
            "llm-pipeline reads; upgrade llm-pipeline or re-create the file"
        )
    return version


def dataclass_fields(
    cls: type,
    data: dict[str, Any],
    file: Path | str,
    what: str,
    error: type[PipelineInputError] = ContractError,
    strict: bool = True,
) -> dict[str, Any]:
    """`data`'s entries for `cls`'s fields; a missing required field (or, `strict`, an unknown
    one) is refused by name, so a typo or a truncated file never passes as a default."""
    if not isinstance(data, dict):
        raise error(f"{file}: must be a JSON object, not {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    required = {
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    }
    unknown = sorted(set(data) - names - {VERSION_KEY})
    if unknown and strict:
        raise error(f"{file}: {what} has unknown field(s): {', '.join(unknown)}")
    missing = sorted(required - set(data))
    if missing:
        raise error(f"{file}: {what} is missing field(s): {', '.join(missing)}")
    return {k: v for k, v in data.items() if k in names}
