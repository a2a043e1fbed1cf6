import json
import sys

import pytest

from tasks.engine.stage import read_manifest, run_stage

THIS = (sys.modules[__name__],)


def writer(calls: list, text: str = "hello"):
    def build(out):
        calls.append(out)
        (out / "a.txt").write_text(text)
        return {"n": 1}

    return build


def test_second_run_with_same_key_is_a_cache_hit(tmp_path):
    calls: list = []
    args = dict(inputs={"x": "f1"}, params={"p": 1}, code=THIS, root=tmp_path)
    first = run_stage("pipe", "s", build=writer(calls), **args)
    second = run_stage("pipe", "s", build=writer(calls), **args)
    assert len(calls) == 1 and not first.cached and second.cached
    assert first.key == second.key and first.fingerprint == second.fingerprint
    manifest = read_manifest(second.file("a.txt").parent)
    assert manifest["parts"]["inputs"] == {"x": "f1"} and manifest["stats"] == {"n": 1}
    assert set(manifest["files"]) == {"a.txt"}


def test_changed_parameter_or_input_reruns(tmp_path):
    calls: list = []
    base = run_stage(
        "pipe",
        "s",
        inputs={"x": "f1"},
        params={"p": 1},
        code=THIS,
        root=tmp_path,
        build=writer(calls),
    )
    other = run_stage(
        "pipe",
        "s",
        inputs={"x": "f1"},
        params={"p": 2},
        code=THIS,
        root=tmp_path,
        build=writer(calls),
    )
    third = run_stage(
        "pipe",
        "s",
        inputs={"x": "f2"},
        params={"p": 1},
        code=THIS,
        root=tmp_path,
        build=writer(calls),
    )
    assert len(calls) == 3 and len({base.key, other.key, third.key}) == 3


def test_corrupted_output_is_detected_and_rebuilt(tmp_path):
    calls: list = []
    args = dict(inputs={}, params={}, code=THIS, root=tmp_path)
    first = run_stage("pipe", "s", build=writer(calls), **args)
    first.file("a.txt").write_text("tampered")
    again = run_stage("pipe", "s", build=writer(calls), **args)
    assert len(calls) == 2 and not again.cached
    assert again.file("a.txt").read_text() == "hello"


def test_failed_build_leaves_nothing_behind(tmp_path):
    def broken(out):
        (out / "half.txt").write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_stage("pipe", "s", inputs={}, params={}, code=THIS, root=tmp_path, build=broken)
    leftovers = [p for p in (tmp_path / "stages").rglob("*") if p.is_file()]
    assert leftovers == []


def test_output_fingerprint_follows_content_not_key(tmp_path):
    a = run_stage(
        "pipe", "s", inputs={"x": 1}, params={}, code=THIS, root=tmp_path, build=writer([], "same")
    )
    b = run_stage(
        "pipe", "s", inputs={"x": 2}, params={}, code=THIS, root=tmp_path, build=writer([], "same")
    )
    assert a.key != b.key and a.fingerprint == b.fingerprint
    assert (
        json.loads(
            (tmp_path / "stages/pipe/s" / b.path.split("/")[-1] / "manifest.json").read_text()
        )["fingerprint"]
        == b.fingerprint
    )
