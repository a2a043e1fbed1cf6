"""Serving and translating as the README writes it, on a tiny seq2seq champion: the README's
own serve lines, run by bash from the checkout with the venv's bin NOT on PATH; each payload
form refuses a non-string or null input with a 400 naming it; `seqflow serve`'s refusals;
`seqflow translate --file` keeps N lines in as N lines out whatever separators a line holds."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port, post, wait_http
from tests.test_serving import payload_forms, refused_in_every_form

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TINY = ["data.limit_train=600", "train.epochs=1", "train.max_steps_per_epoch=3",
        "evaluate.examples=2", "evaluate.max_len=10"]  # fmt: skip
SEPARATORS = ["\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"]


def readme_line(marker: str) -> str:
    """The one bash line of the README holding `marker`, continuation lines joined."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S):
        found += [line.strip() for line in block.replace("\\\n", " ").splitlines()
                  if marker in line]  # fmt: skip
    assert len(found) == 1, found
    return found[0]


def on_port(line: str, port: int) -> str:
    """The README's line with its port 5001 replaced by a free one (nothing else changes)."""
    moved = re.sub(r"(-p |--port )5001\b", rf"\g<1>{port}", line)
    assert moved != line, line
    return moved


def bare_path() -> str:
    """PATH without this venv's bin: a shell where the venv is not activated."""
    kept = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and Path(p).resolve() != BIN.resolve()]  # fmt: skip
    path = os.pathsep.join(kept)
    assert shutil.which("uvicorn", path=path) is None, "another uvicorn is on PATH"
    return path


def checkout(tmp_path: Path) -> Path:
    """The repo root when it holds its .venv (a clone after `make install`), else a folder
    whose .venv is this venv (a git worktree sharing another checkout's venv)."""
    if (REPO / ".venv" / "bin" / "mlflow").exists():
        return REPO
    root = tmp_path / "checkout"
    root.mkdir()
    (root / ".venv").symlink_to(Path(sys.prefix))
    return root


class Shell:
    """A README line run by bash in its own process group, its output in a log file."""

    def __init__(self, line: str, cwd: Path, env: dict, log: Path):
        self.log = log
        self.proc = subprocess.Popen(["bash", "-c", line], cwd=cwd, env=env,
                                     stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def serve_and_check(line: str, cwd: Path, env: dict, log: Path, local: list[str]) -> None:
    """Start `line`; good input in every payload form -> 200 with the local translations;
    a 42, a null or a bool as input 2 -> 400 naming it, in every form."""
    port = free_port()
    shell = Shell(on_port(line, port), cwd, env, log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ping", 300, shell.proc, log)
        good = [{"text": "Ein Mann fährt Fahrrad."}, {"text": "Zwei Hunde."}]
        for form, body in payload_forms(good).items():
            status, answer = post(f"{url}/invocations", json.dumps(body).encode())
            assert status == 200 and answer["predictions"] == local, (form, answer)
        refused_in_every_form(
            f"{url}/invocations", good[0], "text", "input {i} is {what}, not text"
        )
    finally:
        shell.stop()


def seqflow(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_readme_serving_and_translate_lines(prefect_server, data_dir, tmp_path, capsys):
    from flows.cli import main as cli
    from flows.seq2seq import load_translator, seq2seq
    from flows.translator import BadInput

    seq2seq(profile="quick", overrides=TINY)
    model, _ = load_translator()
    local, _ = model.translate(["Ein Mann fährt Fahrrad.", "Zwei Hunde."])
    with pytest.raises(BadInput, match="input 2 is null, not text"):
        model.translate(["Ein Mann.", None])

    # seqflow translate --file: lines end at \n (or \r\n) only, N lines in -> N lines out
    one = "Ein Mann fährt Fahrrad."
    (plain,), _ = model.translate([one])
    lines = [one.replace(" fährt", sep + "fährt") for sep in SEPARATORS] + ["", "Zwei Hunde."]
    for newline in ("\n", "\r\n"):
        path = data_dir / "in.txt"
        path.write_bytes((newline.join(lines) + newline).encode("utf-8"))
        capsys.readouterr()
        assert cli(["translate", "--file", str(path)]) == 0
        got = capsys.readouterr().out.split("\n")[:-1]
        assert len(got) == len(lines), got
        assert got[: len(SEPARATORS)] == [plain] * len(SEPARATORS)  # a separator reads as a space
        assert got[-2] == "" and got[-1] == local[1]
    path.write_text("Ein Mann\u2028fährt.\nZwei Hunde\u2029laufen.", encoding="utf-8")
    assert cli(["translate", "--file", str(path)]) == 0  # no final newline: still 2 lines
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and len(out.splitlines()) == 2, repr(out)

    env = dict(os.environ, PATH=bare_path())
    env.pop("VIRTUAL_ENV", None)
    root = checkout(tmp_path)
    # the README's MLflow line, as written, on this test's store
    line = readme_line("mlflow models serve -m models:/seq2seq@champion")
    store = dict(env, MLFLOW_TRACKING_URI=f"sqlite:///{data_dir / 'mlflow.db'}")
    serve_and_check(line, root, store, tmp_path / "mlflow-serve.log", local)
    # the README's seqflow line: seqflow's own store (SEQFLOW_DATA_DIR), no MLFLOW_TRACKING_URI
    line = readme_line(".venv/bin/seqflow serve seq2seq")
    serve_and_check(line, root, env, tmp_path / "seqflow-serve.log", local)
    assert (
        "serving seq2seq version 1 (champion) on http://127.0.0.1:"
        in (tmp_path / "seqflow-serve.log").read_text()
    )

    # what stops `seqflow serve` before it starts: one line, exit 2
    for args, says in (
        (["fundamentals"], "fundamentals registers no model"),
        (["airline"], "airline has no champion in sqlite:///"),
        (["seq2seq", "--version", "7"], "seq2seq has no version 7"),
        (["seq2seq", "--port", "70000"], "--port 70000: give a port from 1 to 65535"),
    ):
        done = seqflow("serve", *args, env=env)
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout == ""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = seqflow("serve", "seq2seq", "--port", str(port), env=env)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
