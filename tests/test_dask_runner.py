"""Preprocessing sharded on a Dask task runner gives the sequential path's outputs, byte for
byte (full tweets file through the mirror; stage content fingerprints compared)."""

import json
from collections import Counter

from prefect import flow

from flows.config import load_config
from flows.runners import with_runner
from flows.word2vec import preprocess
from tasks.engine.shards import ROWS_PER_SHARD, map_shards, shard_count
from tasks.vocab import merge_counts


@flow(name="word2vec-preprocess")
def preprocess_flow(config) -> list:
    return preprocess(config)


def where(shard: int, offset: int) -> tuple[int, str | None]:
    from distributed import get_worker

    try:
        return shard + offset, get_worker().address
    except ValueError:  # not on a Dask worker
        return shard + offset, None


@flow(name="where-shards-run")
def where_flow() -> list:
    return list(map_shards(where, 5, offset=10))


def test_shards_run_on_the_dask_workers_in_order(prefect_server):
    on_dask = with_runner(where_flow, "dask", workers=2, processes=False)()
    assert [r[0] for r in on_dask] == [10, 11, 12, 13, 14]
    assert all(r[1] for r in on_dask)  # each ran on a worker
    assert where_flow() == [(i + 10, None) for i in range(5)]  # sequential: in this process


def test_merge_counts_keeps_first_occurrence_order():
    shards = [Counter("abca"), Counter("dbe"), Counter("ea")]
    merged = merge_counts(shards)
    assert list(merged) == list(Counter("abcadbeea"))
    assert merged == Counter("abcadbeea")


def on_both_runners(flow_fn, config, tmp_path, monkeypatch) -> tuple:
    """The flow's outputs run sequentially and on Dask, each in a fresh data folder. Dask
    workers are threads in this process to keep tests short (`--runner dask` uses processes)."""
    outputs = []
    for name in ("sequential", "dask"):
        monkeypatch.setenv("SEQFLOW_DATA_DIR", str(tmp_path / name))
        outputs.append(with_runner(flow_fn, name, workers=2, processes=False)(config))
    return tuple(outputs)


def test_dask_preprocessing_matches_sequential(prefect_server, tmp_path, monkeypatch):
    config = load_config("word2vec", "parity")
    seq, par = on_both_runners(preprocess_flow, config, tmp_path, monkeypatch)
    assert all(not s.cached for s in seq + par)
    assert shard_count(seq[0].file("rows.parquet")) == -(-31962 // ROWS_PER_SHARD) == 4
    for a, b in zip(seq, par, strict=True):
        assert a.fingerprint == b.fingerprint, a.stage  # sha256 of every file
        assert a.files == b.files and a.stats == b.stats
        assert a.key == b.key  # the runner is not part of what a stage is
    vocab = json.loads(seq[2].file("vocab.json").read_text())
    assert len(vocab["tokens"]) == 3085 and vocab["tokens"][:2] == ["@user", "father"]
    assert seq[4].stats == {"pairs": 854244, "shards": 4}


@flow(name="seq2seq-tokenize")
def seq2seq_tokenize_flow(config) -> list:
    from tasks.translation import ingest_parallel, tokenize_parallel

    d = config.data
    rows = ingest_parallel("seq2seq", d.dataset, d.src_lang, d.trg_lang, d.limit_train)
    return [rows, tokenize_parallel("seq2seq", rows, config.tokenize)]


def test_dask_seq2seq_tokenize_matches_sequential(prefect_server, tmp_path, monkeypatch):
    """spaCy tokenization of Multi30k (29,000 training pairs: 4 shards) on Dask workers."""
    config = load_config("seq2seq", "parity")
    (_, seq), (_, par) = on_both_runners(seq2seq_tokenize_flow, config, tmp_path, monkeypatch)
    assert not seq.cached and not par.cached
    assert shard_count(seq.file("train.parquet")) == -(-29000 // ROWS_PER_SHARD) == 4
    assert seq.fingerprint == par.fingerprint and seq.stats == par.stats and seq.key == par.key
    assert seq.files == ["test.parquet", "train.parquet", "valid.parquet"]


@flow(name="charlm-encode")
def charlm_encode_flow(config) -> list:
    from tasks.chars import encode_chars, ingest_book

    book = ingest_book("charlm", config.data.dataset, config.data.file)
    return [book, encode_chars("charlm", book, config.data.notebook_text)]


def test_dask_charlm_encode_matches_sequential(prefect_server, tmp_path, monkeypatch):
    """Don Quijote's chapters counted and encoded in shards on Dask workers."""
    config = load_config("charlm", "parity")
    (_, seq), (_, par) = on_both_runners(charlm_encode_flow, config, tmp_path, monkeypatch)
    assert seq.fingerprint == par.fingerprint and seq.stats == par.stats and seq.key == par.key
    vocab = json.loads(seq.file("vocab.json").read_text(encoding="utf-8"))
    assert "".join(vocab) == " eaosnrlduitcmpqybhvgíjóféázñúxwkü"
    assert seq.stats["chapters"] > 32  # more than one shard


def test_dask_shards_your_own_source_as_the_course(prefect_server, tmp_path, monkeypatch):
    """Your own data (the English side of a local dataset folder, read as a stream) is sharded
    on Dask workers as the course's is: the same stage outputs as the sequential path."""
    from tests.conftest import MIRROR

    config = load_config("word2vec", "quick", [
        f"data.source={MIRROR / 'byo' / 'multi30k_en_fr'}", "data.text_column=translation.en",
        "data.label_column=null", "data.limit_rows=null", "data.streaming=true"])  # fmt: skip
    seq, par = on_both_runners(preprocess_flow, config, tmp_path, monkeypatch)
    assert shard_count(seq[0].file("rows.parquet")) == -(-31014 // ROWS_PER_SHARD) == 4
    for a, b in zip(seq, par, strict=True):
        assert a.fingerprint == b.fingerprint and a.key == b.key, a.stage
    assert seq[1].stats["rows"] == 29000 + 1014 + 1000
