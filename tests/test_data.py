"""The data layer: real downloads from a local HTTP server, the mirror, robust decoding."""

import http.server
import threading
from pathlib import Path

import pytest

from tasks.data import DataSourceError, decode_utf8, fetch, read_csv, sha256_file
from tasks.engine.catalog import TWEETS, DatasetSpec, SourceFile
from tests.conftest import MIRROR

TRAIN = MIRROR / "tweets_hate_speech" / "train.csv"


class Handler(http.server.BaseHTTPRequestHandler):
    calls: dict[str, int] = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        Handler.calls[self.path] = Handler.calls.get(self.path, 0) + 1
        body = TRAIN.read_bytes()
        if self.path.startswith("/missing"):
            self.send_error(404, "Not Found")
            return
        if self.path.startswith("/flaky") and Handler.calls[self.path] == 1:
            self.send_error(503, "Service Unavailable")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path.startswith("/truncated"):
            self.wfile.write(body[: len(body) // 3])  # the connection drops mid-transfer
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def no_mirror(monkeypatch):
    monkeypatch.delenv("SEQFLOW_MIRROR", raising=False)


def spec_for(url: str, sha: str = TWEETS.file("train.csv").sha256) -> DatasetSpec:
    return DatasetSpec("tweets_hate_speech", (SourceFile("train.csv", url, sha),))


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file())


def test_download_success_is_verified_and_cached(server, tmp_path, no_mirror):
    cache = tmp_path / "cache"
    path = fetch(spec_for(f"{server}/ok/train.csv"), "train.csv", cache=cache)
    assert path == cache / "tweets_hate_speech" / "train.csv"
    assert sha256_file(path) == TWEETS.file("train.csv").sha256
    assert cache_files(cache) == ["train.csv"]
    # a second fetch is served from the cache, without a request
    before = Handler.calls.get("/ok/train.csv")
    fetch(spec_for(f"{server}/ok/train.csv"), "train.csv", cache=cache)
    assert Handler.calls.get("/ok/train.csv") == before


def test_checksum_mismatch_leaves_the_cache_clean(server, tmp_path, no_mirror):
    cache = tmp_path / "cache"
    spec = spec_for(f"{server}/ok/train.csv", sha="0" * 64)
    with pytest.raises(DataSourceError, match="checksum mismatch.*expected sha256 0000"):
        fetch(spec, "train.csv", cache=cache, retries=1)
    assert cache_files(cache) == []


def test_interrupted_transfer_is_retried_then_reported(server, tmp_path, no_mirror):
    cache = tmp_path / "cache"
    spec = spec_for(f"{server}/truncated/train.csv")
    with pytest.raises(DataSourceError, match="failed after 2 attempts.*interrupted"):
        fetch(spec, "train.csv", cache=cache, retries=2, backoff=0.01)
    assert Handler.calls["/truncated/train.csv"] == 2
    assert cache_files(cache) == []


def test_404_fails_at_once_with_the_url(server, tmp_path, no_mirror):
    cache = tmp_path / "cache"
    spec = spec_for(f"{server}/missing/train.csv")
    with pytest.raises(DataSourceError, match=r"missing/train.csv failed: HTTP 404"):
        fetch(spec, "train.csv", cache=cache, retries=3, backoff=0.01)
    assert Handler.calls["/missing/train.csv"] == 1
    assert cache_files(cache) == []


def test_transient_server_error_is_retried(server, tmp_path, no_mirror):
    cache = tmp_path / "cache"
    path = fetch(
        spec_for(f"{server}/flaky/train.csv"), "train.csv", cache=cache, retries=3, backoff=0.01
    )
    assert Handler.calls["/flaky/train.csv"] == 2
    assert sha256_file(path) == TWEETS.file("train.csv").sha256


def test_corrupted_cache_entry_is_replaced(server, tmp_path, no_mirror):
    cache = tmp_path / "cache"
    target = cache / "tweets_hate_speech" / "train.csv"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the file")
    path = fetch(spec_for(f"{server}/ok/train.csv"), "train.csv", cache=cache)
    assert sha256_file(path) == TWEETS.file("train.csv").sha256


def test_mirror_is_used_as_is(tmp_path):
    path = fetch(TWEETS, "train.csv", mirror=MIRROR, cache=tmp_path / "cache")
    assert path == TRAIN
    assert not (tmp_path / "cache").exists()


def test_mirror_missing_file_names_the_fix(tmp_path):
    with pytest.raises(DataSourceError, match="missing from the mirror.*SEQFLOW_MIRROR"):
        fetch(TWEETS, "train.csv", mirror=tmp_path)


def test_decode_counts_and_replaces_invalid_utf8():
    decoded = decode_utf8(b"ok \xc2 mid \xe2\x80 end \xe2\x82\xac")
    assert decoded.text == "ok \ufffd mid \ufffd end \u20ac"
    assert decoded.decode_errors == 2
    assert decode_utf8("a \ufffd in the bytes".encode()).decode_errors == 0  # not a replacement


def test_train_csv_keeps_every_row_and_reports_the_two_bad_sequences():
    table = read_csv(TRAIN, ("id", "label", "tweet"))
    ids = [int(i) for i in table.columns["id"]]
    assert len(ids) == 31962 and ids == list(range(1, 31963))  # nothing lost or merged
    assert table.decode_errors == 2
    assert table.bad_rows == [11284, 19771]
    assert all(table.columns["tweet"][r - 1].endswith("\ufffd") for r in table.bad_rows)
    assert set(table.columns["label"]) == {"0", "1"}


def test_csv_with_quotes_and_embedded_newlines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'id,label,tweet\r\n1,0,"a ""quoted"" tweet"\r\n2,1,"two\nlines"\r\n')
    table = read_csv(path, ("id", "label", "tweet"))
    assert table.columns["tweet"] == ['a "quoted" tweet', "two\nlines"]


def test_csv_missing_column_is_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,text\n1,hello\n")
    with pytest.raises(DataSourceError, match="lacks column.*label, tweet"):
        read_csv(path, ("id", "label", "tweet"))


def test_empty_csv_is_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("")
    with pytest.raises(DataSourceError, match="is empty"):
        read_csv(path, ("id", "label", "tweet"))
