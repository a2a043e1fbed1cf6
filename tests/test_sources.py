"""tasks/sources.py: your own data read through `datasets` (a dataset folder in the Hub layout,
csv/tsv/json/jsonl/parquet/txt files, a glob), its column mapping checked before any stage, the
seeded carve of missing splits, the source's identity, and a Hub id + revision reaching
`datasets.load_dataset` from a local HTTP server standing in for the Hub (no network)."""

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.config.base import SourceSection
from tasks import sources
from tasks.sources import SourceError

REPO = Path(__file__).resolve().parent.parent
MULTI30K = Path(os.environ["SEQFLOW_MIRROR"]) / "byo" / "multi30k_en_fr"
TEXT = {"text_column": ("text", ("string",))}
LABELLED = {**TEXT, "label_column": ("label", ("string", "number"))}


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"id": i, "text": f"sentence {i} about topic {i % 7}", "label": i % 3}
            for i in range(start, start + n)]  # fmt: skip


def write(path: Path, items: list[dict]) -> Path:
    """items in the format path's extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix
    if ext in (".csv", ".tsv"):
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, list(items[0]), delimiter="\t" if ext == ".tsv" else ",")
            w.writeheader()
            w.writerows(items)
    elif ext == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in items))
    elif ext == ".json":
        path.write_text(json.dumps(items))
    elif ext == ".parquet":
        pq.write_table(pa.Table.from_pylist(items), path)
    elif ext == ".txt":
        path.write_text("".join(r["text"] + "\n" for r in items))
    return path


def section(source, **kw) -> SourceSection:
    return SourceSection(source=str(source), **kw)


def opened(source, wanted=TEXT, **kw):
    return sources.open_source(section(source, **kw), wanted)


# --- each source kind -------------------------------------------------------------------------


def test_a_local_folder_in_the_hub_layout_reads_its_splits(data_dir):
    source = sources.locate(str(MULTI30K))
    assert source.kind == "folder" and "README.md" in source.files
    wanted = {"src_lang": ("translation.en", ("string",)),
              "trg_lang": ("translation.fr", ("string",))}  # fmt: skip
    src, ident, splits, carved = sources.open_source(section(MULTI30K), wanted)
    assert carved == {}  # the folder's README names all three splits
    assert {r: ds.num_rows for r, ds in splits.items()} == {
        "train": 29000, "validation": 1014, "test": 1000}  # fmt: skip
    first = splits["test"][0]["translation"]
    assert set(first) == {"en", "fr"} and first["fr"]
    assert sorted(ident["files"]) == ["README.md", "data/test.jsonl", "data/train.jsonl",
                                      "data/validation.jsonl"]  # fmt: skip
    assert (data_dir / "hf").is_dir()  # datasets' cache is under data/, not ~/.cache


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_a_table_file_reads_by_its_extension(tmp_path, data_dir, ext):
    path = write(tmp_path / f"corpus{ext}", rows(60))
    source = sources.locate(str(path))
    assert source.kind == "files" and source.builder == sources.FORMATS[ext][0]
    _, ident, splits, carved = opened(path, LABELLED)
    assert set(carved) == {"validation", "test"}  # one file: both carved from train
    assert sum(ds.num_rows for ds in splits.values()) == 60
    got = sorted(r["id"] for ds in splits.values() for r in ds)
    assert got == list(range(60))
    assert splits["train"][0]["text"].startswith("sentence ")
    assert list(ident["files"]) == [f"corpus{ext}"]


def test_a_text_file_is_a_row_per_line_or_one_document(tmp_path, data_dir):
    path = write(tmp_path / "book.txt", rows(50))
    _, _, splits, _ = opened(path)
    assert sum(ds.num_rows for ds in splits.values()) == 50
    found = sources.load(sources.locate(str(path)), by_document=True)
    assert found["train"].num_rows == 1 and found["train"][0]["text"].count("sentence") == 50


def test_a_glob_reads_every_file_it_matches(tmp_path, data_dir):
    for k in range(3):
        write(tmp_path / "parts" / f"part-{k}.csv", rows(20, start=20 * k))
    write(tmp_path / "parts" / "notes.jsonl", rows(1))  # not matched by the pattern
    given = str(tmp_path / "parts" / "part-*.csv")
    source = sources.locate(given)
    assert [Path(f).name for f in source.files] == ["part-0.csv", "part-1.csv", "part-2.csv"]
    _, ident, splits, _ = opened(given, LABELLED)
    assert sorted(r["id"] for ds in splits.values() for r in ds) == list(range(60))
    assert sorted(ident["files"]) == ["part-0.csv", "part-1.csv", "part-2.csv"]


def test_a_glob_of_mixed_formats_or_no_match_is_refused(tmp_path):
    write(tmp_path / "a.csv", rows(3))
    write(tmp_path / "b.jsonl", rows(3))
    with pytest.raises(SourceError, match=r"cannot tell the format of \.csv, \.jsonl"):
        sources.locate(str(tmp_path / "*"))
    with pytest.raises(SourceError, match="matches no file"):
        sources.locate(str(tmp_path / "*.parquet"))
    with pytest.raises(SourceError, match="no such file or folder"):
        sources.locate(str(tmp_path / "missing.csv"))


def test_a_stream_is_read_and_carved_too(tmp_path, data_dir):
    path = write(tmp_path / "corpus.jsonl", rows(200))
    _, _, splits, carved = opened(path, LABELLED, streaming=True)
    assert type(splits["train"]).__name__ == "IterableDataset"
    ids = {r: [x["id"] for x in ds] for r, ds in splits.items()}
    _, _, eager, _ = opened(path, LABELLED)
    assert ids == {r: [x["id"] for x in ds] for r, ds in eager.items()}  # same carve either way


# --- each mapping error: a SourceError naming the source and the fix, before any stage --------


def test_a_missing_column_names_the_columns_there_are(tmp_path, data_dir):
    path = write(tmp_path / "tweets.csv", rows(30))
    with pytest.raises(SourceError) as err:
        opened(path, {"text_column": ("tweet", ("string",))})
    text = str(err.value)
    assert str(path) in text and "no column 'tweet' (data.text_column)" in text
    assert "its columns: id, text, label" in text and "--set data.text_column=" in text
    assert not (data_dir / "stages").exists()


@pytest.mark.parametrize(
    "key,column,kinds,holds",
    [
        ("text_column", "id", ("string",), "number"),  # a number column mapped as text
        ("value_column", "text", ("number",), "string"),
    ],  # text mapped as a value  # fmt: skip
)
def test_a_column_of_the_wrong_type_says_which(tmp_path, data_dir, key, column, kinds, holds):
    path = write(tmp_path / "table.parquet", rows(30))
    with pytest.raises(SourceError) as err:
        opened(path, {key: (column, kinds)})
    text = str(err.value)
    assert str(path) in text and f"column {column!r} (data.{key}) holds {holds} values" in text
    assert f"expected {kinds[0]}" in text and f"map data.{key} to a column" in text


def test_a_list_or_dict_column_is_not_a_text(tmp_path, data_dir):
    items = [{"tokens": ["a", "b"], "pair": {"en": "a", "fr": "b"}, "ok": i % 2 == 0}
             for i in range(20)]  # fmt: skip
    path = write(tmp_path / "shapes.jsonl", items)
    with pytest.raises(SourceError, match=r"column 'tokens' \(data.text_column\) holds list"):
        opened(path, {"text_column": ("tokens", ("string",))})
    with pytest.raises(SourceError, match=r"column 'pair' \(data.text_column\) holds dict"):
        opened(path, {"text_column": ("pair", ("string",))})
    opened(path, {"label_column": ("ok", ("string", "number"))})  # booleans are labels


def test_an_empty_split_is_refused(tmp_path, data_dir):
    one = write(tmp_path / "one.csv", rows(1))  # one row: at least two of the three splits empty
    with pytest.raises(SourceError, match=r"split '(train|validation|test)' is empty") as err:
        opened(one)
    assert str(one) in str(err.value)
    header = tmp_path / "header.csv"
    header.write_text("id,text,label\n")
    with pytest.raises(SourceError, match="split 'train' is empty"):
        opened(header)
    zero = tmp_path / "zero.jsonl"
    zero.touch()
    with pytest.raises(SourceError, match=r"zero\.jsonl is empty \(0 bytes\)"):
        opened(zero)
    folder = tmp_path / "folder"
    write(folder / "data" / "train.jsonl", rows(30))
    (folder / "data" / "test.jsonl").touch()
    with pytest.raises(SourceError, match=r"test\.jsonl is empty \(0 bytes\)"):
        opened(folder)


def test_a_named_split_that_is_absent_names_the_splits_there_are(data_dir):
    with pytest.raises(SourceError) as err:
        opened(MULTI30K, {"src_lang": ("translation.en", ("string",))}, train_split="training")
    assert "no split 'training' (data.train_split)" in str(err.value)
    assert "its splits: train, validation, test" in str(err.value)


def test_an_unknown_language_code_names_the_languages_there_are(data_dir):
    wanted = {"src_lang": ("translation.de", ("string",)),
              "trg_lang": ("translation.fr", ("string",))}  # fmt: skip
    with pytest.raises(SourceError) as err:
        sources.open_source(section(MULTI30K), wanted)
    text = str(err.value)
    assert str(MULTI30K) in text and "no language 'de' (data.src_lang)" in text
    assert "it holds en, fr" in text and "Set data.src_lang" in text


def test_a_language_key_on_a_plain_column_is_refused(tmp_path, data_dir):
    path = write(tmp_path / "pairs.csv", rows(20))
    with pytest.raises(SourceError, match=r"column 'text' .*not a dict of languages"):
        opened(path, {"src_lang": ("text.en", ("string",))})


def test_a_bad_mapping_ends_the_cli_before_any_stage_or_mlflow_run(tmp_path):
    path = write(tmp_path / "labelled.csv", rows(40))
    data = tmp_path / "data"
    env = dict(os.environ, SEQFLOW_DATA_DIR=str(data), PYTHONPATH=str(REPO))
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "flows.cli", "run", "word2vec", "--profile", "quick",
           "--data", str(path), "--set", "data.text_column=nope"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 2, done.stderr
    # one line of seqflow's (MLflow may warn on importing a pyfunc class, as on any run)
    lines = [line for line in done.stderr.splitlines() if line.startswith("seqflow:")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("seqflow: data.source ") and str(path) in lines[0]
    assert "no column 'nope' (data.text_column)" in lines[0]
    assert "its columns: id, text, label" in lines[0]
    assert "--set data.text_column=<one of them>" in lines[0]
    assert not (data / "stages").exists()
    assert not (data / "mlflow.db").exists() and not (data / "mlruns").exists()


# --- the seeded carve --------------------------------------------------------------------------


def ids_of(splits) -> dict:
    return {r: {x["id"] for x in ds} for r, ds in splits.items()}


def test_missing_splits_are_carved_from_train_by_a_seed(tmp_path, data_dir):
    path = write(tmp_path / "big.csv", rows(2000))
    kw = {"validation_fraction": 0.1, "test_fraction": 0.2, "split_seed": 7}
    _, _, splits, carved = opened(path, LABELLED, **kw)
    assert carved == {"validation": {"from": "train", "fraction": 0.1, "seed": 7},
                      "test": {"from": "train", "fraction": 0.2, "seed": 7}}  # fmt: skip
    got = ids_of(splits)
    assert not got["train"] & got["validation"] and not got["train"] & got["test"]
    assert not got["validation"] & got["test"]
    assert got["train"] | got["validation"] | got["test"] == set(range(2000))
    assert 140 <= len(got["validation"]) <= 260 and 320 <= len(got["test"]) <= 480
    assert ids_of(opened(path, LABELLED, **kw)[2]) == got  # the same rows every time
    other = ids_of(opened(path, LABELLED, **{**kw, "split_seed": 8})[2])
    assert other["test"] != got["test"]


def test_only_the_missing_split_is_carved(tmp_path, data_dir):
    folder = tmp_path / "two"
    write(folder / "train.jsonl", rows(100))
    write(folder / "test.jsonl", rows(10, start=1000))
    _, _, splits, carved = opened(folder, LABELLED)
    assert set(carved) == {"validation"}
    assert ids_of(splits)["test"] == set(range(1000, 1010))
    assert len(ids_of(splits)["train"]) + len(ids_of(splits)["validation"]) == 100


def test_ingest_writes_the_mapped_columns_and_records_the_carve(tmp_path, data_dir, prefect_server):
    from prefect import flow

    path = write(tmp_path / "reviews.tsv", rows(300))
    cfg = section(path, split_seed=3)
    wanted = {"text_column": ("text", ("string",)), "label_column": ("label", ("number",))}

    @flow
    def ingest_only():
        return sources.ingest_source("word2vec", cfg, wanted, {"text": "text", "label": "label"})

    out = ingest_only()
    manifest = json.loads((Path(out.path) / "manifest.json").read_text())
    stats = manifest["stats"]
    assert stats["source"] == str(path) and stats["kind"] == "files"
    assert stats["carved"]["test"] == {"from": "train", "fraction": 0.1, "seed": 3}
    assert sum(stats["rows"].values()) == 300
    test = pq.read_table(Path(out.path) / "test.parquet")
    assert test.column_names == ["text", "label"] and test.num_rows == stats["rows"]["test"]
    assert Path(out.path).is_relative_to(data_dir / "stages" / "word2vec" / "ingest")
    again = ingest_only()
    assert again.cached and again.key == out.key


# --- identity ----------------------------------------------------------------------------------


def test_identity_is_the_bytes_and_the_mapping_not_the_place(tmp_path):
    first = write(tmp_path / "a" / "corpus.csv", rows(50))
    second = tmp_path / "b" / "corpus.csv"
    second.parent.mkdir()
    shutil.copy(first, second)
    mapping = {"text_column": "text"}

    def fp(path, m=mapping):
        return sources.fingerprint(sources.identity(sources.locate(str(path)), m))

    assert fp(first) == fp(second)  # the same bytes in another folder
    ident = sources.identity(sources.locate(str(first)), mapping)
    assert ident["files"] == {"corpus.csv": hashlib.sha256(first.read_bytes()).hexdigest()}
    body = bytearray(second.read_bytes())
    body[-2] = ord("9") if body[-2] != ord("9") else ord("8")  # one byte changed
    second.write_bytes(bytes(body))
    assert fp(first) != fp(second)
    assert fp(first) != fp(first, {"text_column": "label"})  # a mapping change
    assert fp(first) != fp(first, {**mapping, "label_column": "label"})
    folder = tmp_path / "folder"
    shutil.copytree(MULTI30K, folder)
    assert fp(folder) == fp(MULTI30K)
    cfg = section(first)
    assert sources.data_fingerprint(cfg, TEXT) == fp(first)


# --- the Hub: a local HTTP server as HF_ENDPOINT -----------------------------------------------

HUB_REPO = "someorg/tiny"
HUB_REV = "0123456789abcdef0123456789abcdef01234567"
HUB_FILES = {
    "README.md": b"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
    b"    path: data/train.jsonl\n  - split: test\n    path: data/test.jsonl\n---\n# tiny\n",
    "data/train.jsonl": "".join(json.dumps(r) + "\n" for r in rows(40)).encode(),
    "data/test.jsonl": "".join(json.dumps(r) + "\n" for r in rows(8, start=100)).encode(),
}


def git_oid(body: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()


def tree(prefix: str, recursive: bool) -> list[dict]:
    """The Hub's tree listing of a folder of the repo (files and the folders below it)."""
    out, seen = [], set()
    base = prefix.strip("/")
    for path, body in sorted(HUB_FILES.items()):
        if base and not path.startswith(base + "/"):
            continue
        parts = path[len(base) + 1 if base else 0 :].split("/")
        for k in range(1, len(parts) if recursive else min(2, len(parts))):
            folder = "/".join([*([base] if base else []), *parts[:k]])
            if folder not in seen:
                seen.add(folder)
                out.append({"type": "directory", "path": folder, "oid": "0" * 40, "size": 0})
        if recursive or len(parts) == 1:
            out.append({"type": "file", "path": path, "size": len(body), "oid": git_oid(body)})
    return out


class FakeHub(BaseHTTPRequestHandler):
    """The routes huggingface_hub 2.x / datasets 5.x use for a dataset repo at one commit:
    dataset info (`/api/datasets/<id>/revision/<rev>`, a branch name answers with the commit),
    the tree listing, paths-info, and HEAD/GET of `/datasets/<id>/resolve/<commit>/<file>`."""

    seen: list[str] = []

    def log_message(self, *args):
        pass

    def reply(self, code: int, body: bytes, ctype: str, headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def answer(self, obj):
        self.reply(200, json.dumps(obj).encode(), "application/json")

    def missing(self, code: str):
        self.reply(404, json.dumps({"error": code}).encode(), "application/json",
                   {"X-Error-Code": code})  # fmt: skip

    def route(self, body: str = ""):
        FakeHub.seen.append(f"{self.command} {self.path}")
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        api = f"/api/datasets/{HUB_REPO}"
        if m := re.fullmatch(rf"{api}/revision/([^/]+)", path):
            if m.group(1) not in (HUB_REV, "main"):
                return self.missing("RevisionNotFound")
            return self.answer({"id": HUB_REPO, "sha": HUB_REV, "private": False,
                                "disabled": False, "gated": False, "tags": [], "cardData": {},
                                "siblings": [{"rfilename": f} for f in HUB_FILES]})  # fmt: skip
        if m := re.fullmatch(rf"{api}/tree/([^/]+)/?(.*)", path):
            if m.group(1) != HUB_REV:
                return self.missing("RevisionNotFound")
            recursive = urllib.parse.parse_qs(url.query).get("recursive", ["false"])[0] == "true"
            return self.answer(tree(m.group(2), recursive))
        if m := re.fullmatch(rf"{api}/paths-info/([^/]+)", path):
            if m.group(1) != HUB_REV:
                return self.missing("RevisionNotFound")
            asked = urllib.parse.parse_qs(body).get("paths", [])
            every = {e["path"]: e for e in tree("", True)}
            return self.answer([every[p] for p in asked if p in every])
        if m := re.fullmatch(rf"/datasets/{HUB_REPO}/resolve/([^/]+)/(.+)", path):
            if m.group(1) != HUB_REV:
                return self.missing("RevisionNotFound")
            if (data := HUB_FILES.get(m.group(2))) is None:
                return self.missing("EntryNotFound")
            return self.reply(200, data, "application/octet-stream",
                              {"ETag": f'"{git_oid(data)}"', "X-Repo-Commit": HUB_REV})  # fmt: skip
        return self.missing("RepoNotFound")

    def do_GET(self):
        self.route()

    def do_HEAD(self):
        self.route()

    def do_POST(self):
        self.route(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())


@pytest.fixture
def fake_hub():
    FakeHub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# run in a subprocess: huggingface_hub and datasets read HF_ENDPOINT / HF_HUB_OFFLINE on import
READ_HUB = """
import json, os, sys
from tasks import sources
stream = os.environ.get("READ_STREAM") == "1"
out = {}
for revision in sys.argv[1:]:
    rev = None if revision == "-" else revision
    try:
        source = sources.locate("someorg/tiny", revision=rev)
        ident = sources.identity(source, {"text_column": "text"})
        found = sources.load(source, streaming=stream)
        out[revision] = {"identity": ident, "rows": {k: [r["id"] for r in v]
                                                     for k, v in found.items()}}
    except sources.SourceError as err:
        out[revision] = {"error": str(err)}
print(json.dumps(out))
"""


def read_hub(endpoint, tmp_path: Path, offline: bool, *revisions, stream=False, mirror=False):
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="1" if offline else "0",
               READ_STREAM="1" if stream else "0",
               HF_HOME=str(tmp_path / "hf_home"), SEQFLOW_DATA_DIR=str(tmp_path / "data"),
               PYTHONPATH=str(REPO))  # fmt: skip
    for name in ("SEQFLOW_MIRROR", "HF_DATASETS_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE",
                 "HF_DATASETS_CACHE"):  # fmt: skip
        env.pop(name, None)
    if mirror:
        env["SEQFLOW_MIRROR"] = os.environ["SEQFLOW_MIRROR"]
    done = subprocess.run([sys.executable, "-c", READ_HUB, *revisions], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_hub_id_and_revision_reach_load_dataset(fake_hub, tmp_path):
    got = read_hub(fake_hub, tmp_path, False, HUB_REV, "main")
    first = got[HUB_REV]
    assert "error" not in first, first
    mapping = {"text_column": "text"}
    assert first["identity"] == {"kind": "hub", "name": HUB_REPO, "config": None,
                                 "revision": HUB_REV, "mapping": mapping}  # fmt: skip
    assert first["rows"] == {"train": list(range(40)), "test": list(range(100, 108))}
    # a branch is resolved by the Hub's dataset info to the commit, which is then read
    assert got["main"]["identity"]["revision"] == HUB_REV and got["main"]["rows"] == first["rows"]
    seen = FakeHub.seen
    assert f"GET /api/datasets/{HUB_REPO}/revision/main" in seen
    assert any(s.startswith(f"GET /api/datasets/{HUB_REPO}/revision/{HUB_REV}") for s in seen)
    files = [s for s in seen if f"/datasets/{HUB_REPO}/resolve/" in s]
    assert any(s.endswith("/data/train.jsonl") for s in files), seen
    assert all(f"/resolve/{HUB_REV}/" in s for s in files), files  # only ever that commit
    assert (tmp_path / "data" / "hf" / "someorg___tiny").is_dir()  # datasets' cache: under data/

    # offline afterwards: read from data/hf at that commit, the server never asked
    FakeHub.seen = []
    again = read_hub(fake_hub, tmp_path, True, HUB_REV, "-", "f" * 40)
    assert again[HUB_REV]["rows"] == first["rows"] and again["-"]["rows"] == first["rows"]
    assert again["-"]["identity"]["revision"] == HUB_REV  # the cached commit, not "main"
    streamed = read_hub(fake_hub, tmp_path, True, HUB_REV, stream=True)
    assert streamed[HUB_REV]["rows"] == first["rows"]
    # a mirror in use is offline too, whatever HF_HUB_OFFLINE says
    mirrored = read_hub(fake_hub, tmp_path, False, HUB_REV, "f" * 40, mirror=True)
    assert mirrored[HUB_REV]["rows"] == first["rows"]
    assert "a mirror is in use" in mirrored["f" * 40]["error"]
    refused = again["f" * 40]["error"]  # a commit not in the cache is not read as another one
    assert "HF_HUB_OFFLINE is set or a mirror is in use" in refused
    assert f"cached: {HUB_REV}" in refused
    assert FakeHub.seen == []


def test_offline_a_hub_id_not_cached_fails_at_once_saying_so(data_dir):
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # tests/conftest.py
    source = sources.locate("someorg/tiny", revision="main")
    assert source.kind == "hub"
    with pytest.raises(SourceError) as err:
        sources.identity(source, {"text_column": "text"})
    text = str(err.value)
    assert "data.source 'someorg/tiny' (revision main): HF_HUB_OFFLINE is set or a mirror" in text
    assert "not in the cache" in text and "HF_HUB_OFFLINE=0" in text
    with pytest.raises(SourceError, match="HF_HUB_OFFLINE is set"):
        sources.load(source)
    with pytest.raises(SourceError, match="HF_HUB_OFFLINE is set"):
        sources.open_source(section("someorg/tiny"), TEXT)
