"""The import layout: no cycle among the project's modules, and the arrows point one way.

Read from the source with `ast` (nothing is imported): every `import` and `from ... import`, at
the top level and inside functions. `from tasks.engine import tracking` is an arrow to the
module `tasks.engine.tracking`; `from tasks.engine.stage import run_stage` to `tasks.engine.stage`.

- flows -> tasks -> models; nothing under tasks/ or models/ imports flows.
- tasks/engine/ and tasks/runtime/ (the run machinery) import no stage-function module
  (tasks/archive.py, data.py, ...) and nothing of tasks/train/ (each pipeline's training pieces).
"""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("tasks", "flows", "models")
STAGE_MODULES = {
    f"tasks.{m}"
    for m in ("archive", "data", "text", "vocab", "windows", "chars", "series", "translation",
              "toy", "evaluation")
}  # fmt: skip


def project_modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """{dotted module name: file} for every .py under root/<package>; a package's __init__.py
    is the package's own name."""
    found = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `module`'s file imports, anywhere in the file."""
    out = set()

    def nearest(name: str) -> str | None:  # `import a.b.c` of a non-module: its module part
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(n for a in node.names if (n := nearest(a.name)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this file is in
                pkg = _package_of(module, path).split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            for a in node.names:
                if f"{base}.{a.name}" in modules:  # `from tasks.engine import tracking`
                    out.add(f"{base}.{a.name}")
                elif n := nearest(base):  # `from tasks.engine.stage import run_stage`
                    out.add(n)
    out.discard(module)
    return out


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    modules = project_modules(root, packages)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle [a, b, ..., a] per strongly connected component that has one (Tarjan)."""
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.add(w)
                if w == v:
                    break
            if len(scc) > 1 or v in graph.get(v, ()):
                sccs.append(scc)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_in(graph, scc) for scc in sccs]


def _cycle_in(graph: dict[str, set[str]], scc: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, as a path back to it."""
    start = min(scc)
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & scc):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                todo.append(w)
    raise AssertionError(f"no cycle through {start} in {sorted(scc)}")


def under(graph: dict[str, set[str]], prefix: str) -> dict[str, set[str]]:
    """The subgraph of modules named `prefix` or under it."""
    keep = {m for m in graph if m == prefix or m.startswith(prefix + ".")}
    return {m: graph[m] & keep for m in keep}


def bad_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point the wrong way, as 'importer -> imported (why)'."""
    out = []
    for m, deps in sorted(graph.items()):
        for d in sorted(deps):
            if m.split(".")[0] in ("tasks", "models") and d.split(".")[0] == "flows":
                out.append(f"{m} -> {d} (tasks/ and models/ never import flows)")
            machinery = m.startswith(("tasks.engine", "tasks.runtime"))
            if machinery and d in STAGE_MODULES:
                out.append(f"{m} -> {d} (the run machinery imports no stage-function module)")
            if machinery and (d == "tasks.train" or d.startswith("tasks.train.")):
                out.append(f"{m} -> {d} (the run machinery imports nothing of tasks/train)")
    return out


def _show(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycle_and_the_arrows_point_one_way():
    graph = import_graph(REPO)
    assert {"tasks.engine.stage", "tasks.train.word2vec", "flows.config.base"} <= set(graph)
    assert "tasks.engine.lineage" in graph["tasks.engine.stage"]  # the parser sees imports
    assert "tasks.engine.tracking" in graph["tasks.evaluation"]  # ... inside functions too
    cycles = find_cycles(under(graph, "tasks"))
    assert not cycles, f"import cycles among tasks/ modules:\n{_show(cycles)}"
    cycles = find_cycles(graph)
    assert not cycles, f"import cycles among the project's modules:\n{_show(cycles)}"
    wrong = bad_arrows(graph)
    assert not wrong, "imports against the layout:\n" + "\n".join(wrong)


def test_the_checks_catch_a_cycle_and_a_wrong_arrow(tmp_path):
    files = {
        "tasks/__init__.py": "",
        "tasks/a.py": "from tasks import b\n",
        "tasks/b.py": "def f():\n    import tasks.c\n",  # inside a function
        "tasks/c.py": "from tasks.a import x  # noqa\n",
        "tasks/d.py": "from . import a\nfrom tasks import text\n",  # `.`: relative
        "tasks/engine/__init__.py": "",
        "tasks/engine/x.py": "from tasks.text import tokenize\nfrom tasks.train import w2v\n",
        "tasks/text.py": "import flows.cli\n",
        "tasks/train/__init__.py": "",
        "tasks/train/w2v.py": "",
        "flows/__init__.py": "",
        "flows/cli.py": "from tasks import d\n",
        "models/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)
    assert graph["tasks.d"] == {"tasks.a", "tasks.text"}
    assert find_cycles(under(graph, "tasks")) == [["tasks.a", "tasks.b", "tasks.c", "tasks.a"]]
    assert sorted(find_cycles(graph)) == [  # the whole project: one more, through flows
        ["flows.cli", "tasks.d", "tasks.text", "flows.cli"],
        ["tasks.a", "tasks.b", "tasks.c", "tasks.a"],
    ]
    assert bad_arrows(graph) == [
        "tasks.engine.x -> tasks.text (the run machinery imports no stage-function module)",
        "tasks.engine.x -> tasks.train.w2v (the run machinery imports nothing of tasks/train)",
        "tasks.text -> flows.cli (tasks/ and models/ never import flows)",
    ]
    (tmp_path / "tasks/c.py").write_text("")
    (tmp_path / "tasks/text.py").write_text("")
    assert find_cycles(import_graph(tmp_path)) == []


# -- one runtime: each of its duties is written once, in tasks/runtime/ ------------------------

TRAINING_CODE = ("flows", "models", "tasks/train", "tasks/runtime")
ONCE = {
    # what: (pattern in the training code, the one file allowed to hold it)
    "epoch loop": (r"\bfor epoch in\b", "tasks/runtime/loop.py"),
    "checkpoint writer": (r"\btorch\.save\(", "tasks/runtime/checkpoint.py"),
    "NaN/inf check": (r"\b(math|torch|np)\.(isfinite|isnan)\(", "tasks/runtime/faults.py"),
    "signal handler": (r"\bsignal\.signal\(", "tasks/runtime/signals.py"),
    "DDP launcher": (r"\binit_process_group\(|\bstart_processes\(|torch\.distributed\.run",
                     "tasks/runtime/ddp.py"),
}  # fmt: skip


def where_written(pattern: str) -> set[str]:
    import re

    found = set()
    for folder in TRAINING_CODE:
        for path in (REPO / folder).rglob("*.py"):
            if re.search(pattern, path.read_text(encoding="utf-8")):
                found.add(str(path.relative_to(REPO)))
    return found


def test_each_training_duty_is_written_once_in_the_runtime():
    wrong = {what: sorted(where_written(p) - {home}) for what, (p, home) in ONCE.items()}
    assert {k: v for k, v in wrong.items() if v} == {}
    for what, (pattern, home) in ONCE.items():
        assert home in where_written(pattern), f"{what} is not in {home}"
