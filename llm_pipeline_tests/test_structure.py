"""The package's shape, read from its source: no import cycles, small modules, a Dagster-free core.

The import graph is built statically (every `import` and `from … import` anywhere in a module,
function bodies included), so a cycle that only bites when a function runs — the trainer started
as `-m llm_pipeline.lm.train.loop` importing a module that imports `train` again — still shows up.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "llm_pipeline"
MAX_MODULE_LINES = 400
CORE_PACKAGES = ("text", "tokens", "lm", "report")
# The Pipes protocol library has no dependency on Dagster: it is how an external process (the
# trainer) talks to a run, and is imported only inside the trainer's `main`.
ALLOWED_IN_CORE = ("dagster_pipes",)


def module_name(path: Path) -> str:
    """`llm_pipeline/lm/train/loop.py` → `llm_pipeline.lm.train.loop`; a package `__init__` →
    the package."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _import_statements(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) per import statement anywhere in `path`, relative imports resolved:
    `import a.b` → ("a.b", []); `from a import b, c` → ("a", ["b", "c"])."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    statements: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            statements.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            statements.append((base, [alias.name for alias in node.names]))
    return statements


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module `name` refers to: itself, or its nearest enclosing package module."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (never itself).

    `from pkg import sub` where `sub` is a submodule is an edge to `pkg.sub`, not to `pkg`'s
    `__init__` (which Python runs on the way, but which then only has to be importable);
    `from pkg import name` where `name` is defined in `pkg/__init__.py` is an edge to `pkg`.
    """
    modules = package_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for base, names in _import_statements(path):
            if base != "llm_pipeline" and not base.startswith("llm_pipeline."):
                continue
            for imported in names or [""]:
                full = f"{base}.{imported}" if imported else base
                target = full if full in modules else _resolve(base, modules)
                if target is not None and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def dagster_imports(path: Path) -> list[str]:
    """The Dagster modules `path` imports (dagster, dagster.*, dagster_*), Pipes excepted."""
    found = set()
    for base, _ in _import_statements(path):
        top = base.split(".")[0]
        if (top == "dagster" or top.startswith("dagster_")) and top not in ALLOWED_IN_CORE:
            found.add(base)
    return sorted(found)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles covering every module that is on one (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:
        # Cycles through every member, so a report names each import that has to go.
        covered: set[str] = set()
        for start in component:
            if start not in covered:
                cycle = _cycle_within(graph, set(component), start)
                covered.update(cycle)
                cycles.append(cycle)
    return cycles


def _cycle_within(graph: dict[str, set[str]], component: set[str], start: str) -> list[str]:
    """The shortest closed path start → … → start inside one strongly connected component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    route = [node]
                    while route[-1] != start:
                        route.append(previous[route[-1]])
                    return [*route[::-1], start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"not a strongly connected component: {sorted(component)}")


def package_of(module: str) -> str:
    """`llm_pipeline.assets.model` → `llm_pipeline.assets`; a top-level module is its own."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_cycle_finder_reports_a_cycle() -> None:
    """The finder itself: a graph with a cycle yields it as a closed path, a DAG yields none."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # cli/__init__ imports its submodules; runs.py imports definitions inside a function.
    assert "llm_pipeline.cli.runs" in graph["llm_pipeline.cli"]
    assert "llm_pipeline.definitions" in graph["llm_pipeline.cli.runs"]


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_no_cycles_between_subpackages() -> None:
    """Packages layer too: `assets` and `automation` must not import each other's names."""
    graph: dict[str, set[str]] = {}
    behind: dict[tuple[str, str], list[str]] = {}
    for module, targets in import_graph().items():
        source = package_of(module)
        graph.setdefault(source, set())
        for target in sorted(targets):
            if package_of(target) != source:
                graph[source].add(package_of(target))
                behind.setdefault((source, package_of(target)), []).append(f"{module} → {target}")
    cycles = find_cycles(graph)
    report = []
    for cycle in cycles:
        report.append(" → ".join(cycle))
        for edge in itertools.pairwise(cycle):
            report.extend(f"    {line}" for line in behind[edge])
    assert not cycles, "cycles between packages (and the imports behind them):\n" + "\n".join(
        report
    )


def test_no_module_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(REPO)): count
        for path in sorted(PACKAGE.rglob("*.py"))
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_core_packages_import_no_dagster() -> None:
    """text, tokens, lm and report import no Dagster, directly or through another module of the
    package they import."""
    modules = package_modules()
    graph = import_graph()
    direct = {name: dagster_imports(path) for name, path in modules.items()}
    offenders = {}
    for name in modules:
        if package_of(name).rpartition(".")[2] not in CORE_PACKAGES:
            continue
        reached, frontier = {name}, [name]
        while frontier:
            frontier = [t for m in frontier for t in graph[m] if t not in reached]
            reached.update(frontier)
        via = {m: direct[m] for m in sorted(reached) if direct[m]}
        if via:
            offenders[name] = via
    assert not offenders, f"core modules reaching Dagster (module: its imports): {offenders}"


def test_private_dagster_apis_only_in_the_compat_module() -> None:
    """`git grep -l "dagster\\._" llm_pipeline` lists one module: the one door to Dagster's
    internals."""
    listed = subprocess.run(
        ["git", "grep", "--untracked", "-l", r"dagster\._", "--", "llm_pipeline"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert listed == ["llm_pipeline/dagster_compat.py"], listed


# An asset reads its inputs, calls its stage's core function, writes and reports metadata;
# the orchestration lives in the core, where a benchmark or a notebook can call it (issue 23).
MAX_ASSET_BODY_LINES = 40
ASSETS = PACKAGE / "assets"
BENCHMARKS = REPO / "benchmarks"
# The Dagster shell: a benchmark that imports one of these measures Dagster, not the stage.
SHELL_MODULES = ("llm_pipeline.assets", "llm_pipeline.definitions", "llm_pipeline.automation",
                 "llm_pipeline.checks", "llm_pipeline.cli")  # fmt: skip


def _is_asset_decorator(decorator: ast.expr) -> bool:
    """`@asset`, `@asset(...)`, `@dg.asset(...)` (not `@asset_check` or `@multi_asset`)."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name == "asset"


def asset_body_lines(path: Path) -> dict[str, int]:
    """Each `@asset` function in `path` by name, with the lines of its body (below the
    signature, docstring included; decorators and signature not counted)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        node.name: node.end_lineno - node.body[0].lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(_is_asset_decorator(d) for d in node.decorator_list)
    }


def test_asset_body_counter_counts_the_body_only(tmp_path: Path) -> None:
    source = tmp_path / "stage.py"
    source.write_text(
        "@asset(group_name='x')\n@clear_errors\ndef thing(\n    context,\n) -> None:\n"
        '    """Doc."""\n    return None\n\n\n@asset_check(asset=thing)\ndef check(): pass\n'
    )
    assert asset_body_lines(source) == {"thing": 2}


def test_no_asset_body_over_the_line_limit() -> None:
    long = {
        f"{path.relative_to(REPO)}:{name}": count
        for path in sorted(ASSETS.glob("*.py"))
        for name, count in asset_body_lines(path).items()
        if count > MAX_ASSET_BODY_LINES
    }
    assert not long, (
        f"asset bodies over {MAX_ASSET_BODY_LINES} lines (move the stage into a core "
        f"function): {long}"
    )


def _shell_imports(path: Path, allowed: tuple[str, ...] = ()) -> list[str]:
    """The Dagster and shell modules `path` imports (`from llm_pipeline import assets` counts as
    `llm_pipeline.assets`), leaving out the top-level packages in `allowed`."""
    found = set()
    for base, names in _import_statements(path):
        for name in [base, *(f"{base}.{n}" for n in names if base == "llm_pipeline")]:
            top = name.split(".")[0]
            if top in allowed:
                continue
            if top == "dagster" or top.startswith("dagster_"):
                found.add(base)
            elif any(name == shell or name.startswith(f"{shell}.") for shell in SHELL_MODULES):
                found.add(name)
    return sorted(found)


# The one benchmark whose subject is the Dagster run itself (`llm-pipeline run`, started as a
# process): it reads the run's step times back from the Dagster instance. It imports no shell
# module.
WHOLE_RUN_BENCHMARKS = {"run_memory.py": ("dagster",)}


def test_benchmarks_import_only_the_core() -> None:
    """Benchmarks measure the core stages: no Dagster, and no module of the Dagster shell, so
    what they time is the stage a notebook would call."""
    offenders = {
        path.name: found
        for path in sorted(BENCHMARKS.glob("*.py"))
        if (found := _shell_imports(path, WHOLE_RUN_BENCHMARKS.get(path.name, ())))
    }
    assert not offenders, f"benchmarks importing Dagster or the shell: {offenders}"
