"""Parity checks: the notebook figures a pipeline must reproduce, checked at the end of a
`parity` run. Each pipeline declares its checks (PARITY in flows/<name>.py); the check task logs
`parity.md` (check, expected, got, pass) and metric `parity_failures` to the run, and fails the
run when a check fails (config `strict_parity: false` turns that into a warning)."""

import math
import operator
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine import tracking
from tasks.engine.stage import run_logger

OPS = {"==": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class Check:
    """`got <op> expected`; op "==" with `tol` > 0 compares numbers within tol."""

    name: str
    expected: object
    op: str = "=="
    tol: float = 0.0

    def passes(self, got) -> bool:
        if got is None:
            return False
        if self.op == "==" and self.tol and isinstance(got, int | float):
            return math.isfinite(got) and abs(got - self.expected) <= self.tol
        return OPS[self.op](got, self.expected)

    def wanted(self) -> str:
        tol = f" ± {self.tol:g}" if self.tol else ""
        return f"{'' if self.op == '==' else self.op + ' '}{_show(self.expected)}{tol}"


class ParityError(RuntimeError):
    """A parity check failed and `strict_parity` is on."""


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value) if isinstance(value, str) else f"{value:,}" if isinstance(value, int) \
        else str(value)  # fmt: skip


def report(pipeline: str, checks: list[Check], got: dict) -> tuple[str, list[str]]:
    """(markdown table, the names of the failed checks)."""
    rows, failed = [], []
    for c in checks:
        ok = c.passes(got.get(c.name))
        failed += [] if ok else [c.name]
        value = _show(got[c.name]) if c.name in got else "missing"
        rows.append(f"| {c.name} | {c.wanted()} | {value} | {'pass' if ok else '**FAIL**'} |")
    head = [f"# {pipeline}: parity with the notebook", "",
            f"{len(checks) - len(failed)} of {len(checks)} checks pass.", "",
            "| check | expected | got | pass |", "|---|---|---|---|"]  # fmt: skip
    return "\n".join(head + rows) + "\n", failed


@task(name="parity", cache_policy=NO_CACHE)
def check_parity(run_id: str, pipeline: str, checks: list[Check], got: dict, strict: bool) -> None:
    """Log parity.md and parity_failures; raise ParityError when a check fails and `strict`."""
    markdown, failed = report(pipeline, checks, got)
    tags = tracking.get_run(run_id).data.tags
    model = tags.get("registered_model", "none registered").replace("/", " version ")
    about = f"Model {model}, profile {tags.get('profile', '?')}, MLflow run {run_id}.\n\n"
    markdown = markdown.replace("\n\n", "\n\n" + about, 1)
    tracking.log_text(run_id, markdown, "parity.md")
    tracking.log_metrics(run_id, {"parity_failures": len(failed)})
    if failed:
        detail = "; ".join(
            f"{c.name}: expected {c.wanted()}, got {_show(got.get(c.name))}"
            for c in checks if c.name in failed
        )  # fmt: skip
        if strict:
            raise ParityError(f"{pipeline} parity check failed: {detail}")
        run_logger().warning("%s parity check failed (strict_parity off): %s", pipeline, detail)
    else:
        run_logger().info("%s: all %d parity checks pass", pipeline, len(checks))
