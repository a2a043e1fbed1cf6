"""Why a stage ran: the named parts of its cache key, and how two sets of parts differ.

A stage's parts are its inputs' fingerprints, its parameters, the hash of every project module
its code can reach (the stage's module and, transitively, the project modules it imports, so an
edited helper changes the key) and the versions of the libraries that shape its output.
"""

import ast
import hashlib
import importlib.metadata
import json
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]  # tasks/engine/lineage.py -> the checkout
PACKAGES = ("tasks", "models", "flows")


def _imports(path: Path) -> set[str]:
    """Project modules named by the import statements of a file (top level and in functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from tasks import x`
    return {n for n in found if n.split(".")[0] in PACKAGES}


def code_parts(*modules: ModuleType) -> dict[str, str]:
    """{repo-relative path: sha256[:16] of its source} for `modules` and every project module
    they import, transitively."""
    todo = [Path(m.__file__).resolve() for m in modules]
    seen: dict[Path, str] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        deps = (REPO.joinpath(*n.split(".")).with_suffix(".py") for n in _imports(path))
        todo += [d for d in deps if d.is_file() and d.name != "__init__.py"]  # modules, not names
    return {str(p.relative_to(REPO)): h for p, h in sorted(seen.items())}


def key_parts(inputs: dict, params: dict, code: tuple, libs: tuple = ()) -> tuple[str, dict]:
    """(key, parts): the named parts of a stage or step and the sha256 of them."""
    parts = {"inputs": inputs, "params": params, "code": code_parts(*code),
             "libs": {n: importlib.metadata.version(n) for n in sorted(libs)}}  # fmt: skip
    return digest(parts), parts


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def step_entry(name: str, inputs: dict, params: dict, code: tuple, libs: tuple = ()) -> dict:
    """A lineage entry for a step that is never cached (training): the parts that shape it, so
    `explain` can say what changed since the closest earlier run."""
    key, parts = key_parts(inputs, params, code, libs)
    return {"stage": name, "key": key, "cached": False, "parts": parts, "always_runs": True}


def _flat(params: dict, prefix: str) -> dict[str, object]:
    out = {}
    for k, v in params.items():
        name = f"{prefix}.{k}"
        out |= _flat(v, name) if isinstance(v, dict) else {name: v}
    return out


def _changed(new: dict, old: dict, unset=None) -> list[tuple]:
    """(key, old value, new value) of every key whose value differs, in key order."""
    keys = sorted(new.keys() | old.keys())
    return [(k, old.get(k, unset), new.get(k, unset)) for k in keys
            if new.get(k, unset) != old.get(k, unset)]  # fmt: skip


def differences(stage: str, new: dict, old: dict) -> list[str]:
    """What differs between two stages' parts, in words (empty: the same key)."""

    def pair(part: str) -> tuple:
        return new.get(part, {}), old.get(part, {})

    params = [_flat(p, stage) for p in pair("params")]
    out = [f"parameter {k} changed ({_v(a)} -> {_v(b)})" for k, a, b in _changed(*params, "unset")]
    out += [f"input {k} changed" for k, _, _ in _changed(*pair("inputs"))]
    if changed := [f for f, _, _ in _changed(*pair("code"))]:
        out.append(f"code changed ({', '.join(changed)})")
    return out + [f"library {lib} changed ({a} -> {b})" for lib, a, b in _changed(*pair("libs"))]


def _v(value) -> str:
    return "null" if value is None else str(value)


def explain(stages: list[dict], earlier: list[tuple[str, list[dict]]]) -> list[str]:
    """One line per stage of a run's lineage: `cached`, or `ran` and why, against the closest
    earlier run holding that stage (fewest differences, then the most recent).

    stages: the run's lineage entries {stage, key, cached, parts}; earlier: (run id, its
    lineage entries), newest first.
    """
    return [_why(s, earlier) for s in stages]


def _why(s: dict, earlier: list[tuple[str, list[dict]]]) -> str:
    name = s["stage"]
    if s["cached"]:
        return f"{name} cached (key {s['key'][:12]})"
    same = [(r, e["parts"]) for r, entries in earlier for e in entries if e["stage"] == name]
    diffs = [(r, differences(name, s["parts"], parts)) for r, parts in same]
    best = min(diffs, key=lambda d: len(d[1]), default=None)  # the first of the fewest
    if best is None:
        return f"{name} ran: first run of this stage"
    if not best[1] and s.get("always_runs"):
        return (f"{name} ran: it always runs; nothing it depends on changed since run "
                f"{best[0][:8]}")  # fmt: skip
    if not best[1]:
        return (f"{name} ran: same key as run {best[0][:8]}, whose output was missing "
                "or corrupted here")  # fmt: skip
    return f"{name} ran: {'; '.join(best[1])} (vs run {best[0][:8]})"
