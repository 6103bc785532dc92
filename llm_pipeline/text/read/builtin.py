"""The built-in corpus: docstrings of the running interpreter's standard library.

It is text every Python install already has, so the first run needs no download, and it is the
right size for a laptop (about 11k docstrings, 2.3 MB): big enough to train a small model that
visibly learns, small enough to do it in minutes.
"""

from __future__ import annotations

import ast
import json
import sysconfig
import warnings
from pathlib import Path

from llm_pipeline.atomic import atomic_path

BUILTIN_CORPUS = "python-stdlib-docs"
BUILTIN_FILE = "stdlib_docstrings.jsonl"

_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def stdlib_root() -> Path:
    """The folder of the running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def _qualified_docstrings(tree: ast.Module, module: str):
    stack = [(tree, module)]
    while stack:
        node, name = stack.pop()
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield name, doc
        children = [c for c in ast.iter_child_nodes(node) if isinstance(c, _DOCUMENTED)]
        for child in reversed(children):
            stack.append((child, f"{name}.{child.name}"))


def iter_stdlib_docstrings(root: Path | None = None):
    """Yield {"text", "module", "qualname"} records, in a stable order, from every stdlib module.

    Third-party packages (`site-packages`) are left out; files that do not parse under this
    interpreter (deliberately broken test inputs) are skipped.
    """
    root = root or stdlib_root()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("site-packages", "dist-packages"):
            continue
        module = ".".join(rel.with_suffix("").parts)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, UnicodeDecodeError):
            continue
        for qualname, doc in _qualified_docstrings(tree, module):
            yield {"text": doc, "module": module, "qualname": qualname}


def write_builtin_corpus(raw_folder: Path) -> dict:
    """Write the built-in corpus as JSONL into `raw_folder`; return counts."""
    raw_folder.mkdir(parents=True, exist_ok=True)
    documents = 0
    n_bytes = 0
    with atomic_path(raw_folder / BUILTIN_FILE) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for record in iter_stdlib_docstrings():
            text = record["text"]
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                continue
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            documents += 1
            n_bytes += len(text.encode("utf-8"))
    return {"documents": documents, "bytes": n_bytes, "path": str(raw_folder / BUILTIN_FILE)}
