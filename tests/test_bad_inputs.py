"""Bad inputs, one case per test: each ends in our own error naming the input and the fix, or
in a counted repair. The matrix these fill in is docs/reliability.md; cases already covered
elsewhere (test_data, test_archive, test_series, test_chars, test_config) are not repeated."""

import io
import re
import tarfile
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from flows.config import ConfigError
from tasks.archive import ArchiveError, find_member, read_parallel, safe_extract
from tasks.chars import TextFormatError, ingest_book, split_windows
from tasks.data import DataSourceError, fetch, incoming_files, ingest_csv, read_csv
from tasks.engine.catalog import DATASETS
from tasks.engine.tracking import values
from tasks.series import SeriesError, ingest_series, load_series, read_windows, window_series

TWEET_COLS = ("id", "label", "tweet")


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- missing file ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "file"),
    [
        ("tweets_hate_speech", "train.csv"),  # word2vec
        ("multi30k", "training.tar.gz"),  # seq2seq
        ("quijote", "2000-0.txt"),  # charlm
        ("airline_passengers", "airline-passengers.csv"),  # airline
    ],
)
def test_missing_source_file_names_path_and_fix(tmp_path, dataset, file):
    with pytest.raises(DataSourceError) as caught:
        fetch(DATASETS[dataset], file, mirror=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / dataset / file) in message and "SEQFLOW_MIRROR" in message


def test_seq2seq_missing_archive_is_named(tmp_path):
    with pytest.raises(ArchiveError, match=r"nope.tar.gz does not exist; download it first"):
        safe_extract(tmp_path / "nope.tar.gz", tmp_path / "out")


# -- empty file ------------------------------------------------------------------------------


def test_seq2seq_empty_archive_file_is_named(tmp_path):
    archive = write(tmp_path / "training.tar.gz", b"")
    with pytest.raises(ArchiveError, match=r"training.tar.gz: could not be read as a .tar.gz"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_seq2seq_archive_without_the_split_names_what_it_found(tmp_path):
    archive = tmp_path / "training.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("README")
        tar.addfile(info, io.BytesIO(b""))
    names = safe_extract(archive, tmp_path / "out")
    with pytest.raises(ArchiveError, match=r"no file ending with 'train.de'.*\['README'\]"):
        find_member(names, "train.de")


def test_seq2seq_empty_parallel_files_are_refused(tmp_path):
    src, trg = write(tmp_path / "x.de", b"\n"), write(tmp_path / "x.en", b"")
    with pytest.raises(ArchiveError, match=r"x.de and .*x.en hold no sentences"):
        read_parallel(src, trg)


def test_charlm_empty_incoming_text_is_refused(data_dir):
    empty = write(data_dir / "incoming" / "charlm" / "empty.txt", b"")
    with pytest.raises(TextFormatError, match=r"empty.txt: no letter .* remove the file"):
        ingest_book.fn("charlm", "quijote", "2000-0.txt", [empty])
    assert empty.exists() and not (data_dir / "stages").exists()


def test_word2vec_header_only_incoming_csv_adds_zero_counted_rows(data_dir):
    extra = write(data_dir / "incoming" / "word2vec" / "new.csv", b"id,label,tweet\r\n")
    rows = ingest_csv.fn("word2vec", "tweets_hate_speech", "train.csv", 10, [extra])
    assert rows.stats["rows"] == 10 and rows.stats["rows_from"] == {"train.csv": 10, "new.csv": 0}


# -- wrong columns and values ----------------------------------------------------------------


def test_word2vec_non_integer_label_is_named(data_dir):
    extra = write(data_dir / "incoming" / "word2vec" / "bad.csv", b"id,label,tweet\n7,yes,hi\n")
    with pytest.raises(DataSourceError, match=r"bad.csv: column 'label' must hold integers"):
        ingest_csv.fn("word2vec", "tweets_hate_speech", "train.csv", 10, [extra])


# -- encodings -------------------------------------------------------------------------------


@pytest.mark.parametrize("bom", ["utf-16", "utf-16-be"])
def test_word2vec_utf16_csv_is_named(tmp_path, bom):
    path = write(tmp_path / "t.csv", "id,label,tweet\n1,0,hi\n".encode(bom))
    with pytest.raises(DataSourceError, match=r"t.csv looks like UTF-16.*save it as UTF-8"):
        read_csv(path, TWEET_COLS)


def test_airline_utf16_csv_is_named(tmp_path):
    path = write(tmp_path / "a.csv", "Month,Passengers\n1949-01,112\n".encode("utf-16"))
    with pytest.raises(DataSourceError, match=r"a.csv looks like UTF-16"):
        load_series(path, ("Month", "Passengers"), None)


def test_word2vec_mixed_encoding_row_is_replaced_and_counted(tmp_path):
    good = "id,label,tweet\n1,0,café\n2,0,ok\n".encode()
    path = write(tmp_path / "t.csv", good + "3,1,naïve\n".encode("cp1252"))
    table = read_csv(path, TWEET_COLS)
    assert table.columns["id"] == ["1", "2", "3"]  # no row lost
    assert table.columns["tweet"] == ["café", "ok", "na\ufffdve"]
    assert table.decode_errors == 1 and table.bad_rows == [3]


@pytest.mark.parametrize(
    "data",
    [
        "Señor".encode("latin-1"),  # all Latin-1
        "Señor ".encode() + "Señora".encode("latin-1"),  # UTF-8, then one Latin-1 word
    ],
    ids=["latin1", "mixed"],
)
def test_charlm_incoming_text_in_another_encoding_is_named(data_dir, data):
    bad = write(data_dir / "incoming" / "charlm" / "book.txt", data)
    with pytest.raises(TextFormatError, match=r"book.txt: not UTF-8 \(byte \d+\)"):
        ingest_book.fn("charlm", "quijote", "2000-0.txt", [bad])


def test_seq2seq_mixed_encoding_line_is_named(tmp_path):
    src = write(tmp_path / "x.de", "Grüße\n".encode() + "Grüße\n".encode("latin-1"))
    trg = write(tmp_path / "x.en", b"hi\nhi\n")
    with pytest.raises(ArchiveError, match=r"x.de is not valid UTF-8 \(line 2, byte 10\)"):
        read_parallel(src, trg)


# -- CSV quoting -----------------------------------------------------------------------------


def test_word2vec_unclosed_quote_fails_instead_of_swallowing_rows(tmp_path):
    path = write(tmp_path / "t.csv", b'id,label,tweet\n1,0,"hello\n2,0,world\n3,1,bye\n')
    with pytest.raises(DataSourceError, match=r"starting on line 2: unexpected end of data.*quot"):
        read_csv(path, TWEET_COLS)


def test_word2vec_text_after_closing_quote_is_named(tmp_path):
    path = write(tmp_path / "t.csv", b'id,label,tweet\n1,0,"he"llo\n')
    with pytest.raises(DataSourceError, match=r"t.csv, record starting on line 2: ',' expected"):
        read_csv(path, TWEET_COLS)


# -- macOS junk ------------------------------------------------------------------------------


@pytest.mark.parametrize(("pipeline", "suffix"), [("word2vec", ".csv"), ("charlm", ".txt")])
def test_incoming_macos_forks_are_skipped(data_dir, pipeline, suffix):
    folder = data_dir / "incoming" / pipeline
    write(folder / f"._new{suffix}", b"\x00\x05\x16\x07 Mac OS X resource fork")
    write(folder / f"new{suffix}", b"x")
    assert [p.name for p in incoming_files(pipeline, suffix)] == [f"new{suffix}"]


# -- nothing survives the vocabulary filter --------------------------------------------------


def test_charlm_incoming_text_without_letters_is_refused(data_dir):
    bad = write(data_dir / "incoming" / "charlm" / "cjk.txt", "天下 123 ¿?".encode())
    with pytest.raises(TextFormatError, match=r"cjk.txt: no letter"):
        ingest_book.fn("charlm", "quijote", "2000-0.txt", [bad])


def test_seq2seq_vocab_of_specials_only_is_refused(data_dir):
    from tasks.engine.stage import run_stage, write_table
    from tasks.translation import build_vocabs

    def tokens(out):
        table = pa.table({"src_tokens": [["ein"], ["mann"]], "trg_tokens": [["a"], ["man"]]})
        write_table(table, out / "train.parquet")
        return {}

    stage = run_stage("seq2seq", "tokenize", inputs={}, params={}, code=(), build=tokens)
    with pytest.raises(ValueError, match=r"no src token .* at least 2 times.*vocab.min_freq"):
        build_vocabs.fn("seq2seq", stage, 2)


# -- longer than the configured limits -------------------------------------------------------


def test_charlm_window_longer_than_the_text_parity():
    chaps = [np.arange(50, dtype=np.int8)]
    cfg = SimpleNamespace(split="parity", length=32, n_train=10, n_test=10)
    with pytest.raises(TextFormatError, match=r"17 windows of 33 characters, fewer than .* 20"):
        split_windows(chaps, cfg)


def test_charlm_window_longer_than_every_chapter():
    chaps = [np.arange(20, dtype=np.int8)] * 4
    cfg = SimpleNamespace(split="chapters", length=32, stride=1, test_every=2)
    with pytest.raises(TextFormatError, match=r"no training window of 33 .*windows.length"):
        split_windows(chaps, cfg)


def test_airline_lookback_longer_than_the_series(data_dir):
    from flows.config import load_config

    series = ingest_series.fn("airline", "airline_passengers", "airline-passengers.csv", 144)
    cfg = load_config("airline", "parity", ["windows.lookback=40"]).windows
    with pytest.raises(SeriesError, match=r"144 months split at 115 leave no window .* 40"):
        window_series.fn("airline", series, cfg)


# -- a corrupted Parquet stage output is detected and rebuilt --------------------------------


def test_corrupted_parquet_is_detected_by_checksum_and_rebuilt(data_dir):
    from flows.config import load_config

    series = ingest_series.fn("airline", "airline_passengers", "airline-passengers.csv", 144)
    cfg = load_config("airline", "parity").windows
    first = window_series.fn("airline", series, cfg)
    path = first.file("windows.parquet")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte, same size: only the sha256 can tell
    path.write_bytes(bytes(raw))
    again = window_series.fn("airline", series, cfg)
    assert not again.cached and again.path == first.path
    assert again.fingerprint == first.fingerprint  # the same bytes as before the damage
    assert read_windows(again, "train")[0].shape == (111, 4, 1)


# -- config values: wrong type or out of range, rejected before any work -----------------------

BAD_CONFIG = [
    ("seq2seq", "train.dropout=1.5"),
    ("seq2seq", "train.batch_size=big"),
    ("charlm", "windows.length=0"),
    ("charlm", 'train.kinds=["transformer"]'),
    ("airline", "windows.train_fraction=1.5"),
    ("airline", "data.expected_rows=many"),
    ("fundamentals", "data.num_seq=two"),
    ("fundamentals", "data.p_train=0.95"),  # with p_val + p_test = 0.2 the splits overlap
    ("fundamentals", "data.num_seq=5"),  # int(5 * 0.1) = 0: an empty validation split
]


@pytest.mark.parametrize(("pipeline", "bad"), BAD_CONFIG)
def test_bad_config_value_is_rejected_before_any_work(data_dir, pipeline, bad):
    from flows import pipelines

    flow = pipelines.get(pipeline).flow
    field = bad.split("=")[0].split(".")[-1]
    with pytest.raises(ConfigError, match=field):
        flow.fn(profile="quick", overrides=[bad])
    assert not data_dir.exists() or not any(data_dir.iterdir())  # no stage, no MLflow store


# -- incoming rows at the door: `seqflow ingest` and `seqflow retrain` refuse them before any
# stage, every fault named with its file and line; nothing is copied, trained or logged ------

HEADER = "id,label,tweet\n"
SMALL = ["--set", "data.limit_rows=600", "--set", "train.epochs=1",
         "--set", "train.max_steps_per_epoch=2"]  # fmt: skip
BAD_ROWS = {  # what a user really sends (after one good row) -> what the error must say
    "label outside the source's": ("900001,2,labelled 2\n", r"line 3: label 2 is not one"),
    "id repeated in the file": ("900002,0,one\n900002,1,two\n", r"line 4: id 900002 repeats"),
    "id of the source, other text": ("1,0,not the source's tweet\n", r"line 3: id 1 is already in "
                                                                     r"the source train.csv"),
    "empty tweet": ("900003,0,   \n", r"line 3: the tweet is empty"),
    "20 MB tweet": (f'900004,0,"{"x" * 20_000_000}"\n', r"record starting on line 3: a field is "
                                                        r"longer than 131,072 characters"),
}  # fmt: skip


def nothing_happened(data_dir):
    """No incoming file kept, no stage built, no MLflow run, no model version."""
    from tests.resume import store

    folder = data_dir / "incoming" / "word2vec"
    assert not folder.exists() or not any(folder.iterdir())
    assert not (data_dir / "stages").exists()
    if (data_dir / "mlflow.db").exists():
        c = store(data_dir)
        exp = c.get_experiment_by_name("word2vec")
        assert exp is None or not c.search_runs([exp.experiment_id])
        assert not c.search_model_versions("name = 'word2vec'")


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_incoming_rows_are_refused_by_ingest_and_by_retrain(
    prefect_server, data_dir, tmp_path, capsys, case
):
    from flows.cli import main as cli

    body, says = BAD_ROWS[case]
    bad = write(tmp_path / "new.csv", (HEADER + "900100,0,a good row\n" + body).encode())
    assert cli(["ingest", "word2vec", str(bad)]) == 2
    err = capsys.readouterr().err
    assert re.search(f"new.csv, {says}", err) and "nothing was copied" in err
    nothing_happened(data_dir)

    dropped = write(data_dir / "incoming" / "word2vec" / "new.csv", bad.read_bytes())
    assert cli(["retrain", "word2vec", *SMALL]) == 1
    err = capsys.readouterr().err
    assert re.search(f"new.csv, {says}", err) and "nothing was copied or trained" in err
    dropped.unlink()  # the file stays for the user to fix; nothing else happened
    nothing_happened(data_dir)


def test_every_fault_of_every_file_is_named_at_once(data_dir, tmp_path):
    from flows.ingest import ingest
    from tasks.incoming import IncomingError

    rows = [b for case, (b, _) in BAD_ROWS.items() if case != "20 MB tweet"]  # a file-level fault
    a = write(tmp_path / "a.csv", (HEADER + "".join(rows)).encode())
    b = write(tmp_path / "b.csv", b"id,tweet\n1,no label column\n")
    with pytest.raises(IncomingError) as caught:
        ingest("word2vec", [a, b])
    msg = str(caught.value)
    assert msg.startswith("5 problem(s)")
    for line in (2, 4, 5, 6):
        assert f"a.csv, line {line}:" in msg
    assert "b.csv lacks column(s) label" in msg
    nothing_happened(data_dir)


def test_an_oversized_field_names_its_size_and_the_limit_not_the_quoting(tmp_path):
    import csv

    huge = write(tmp_path / "huge.csv", (HEADER + "900001,0," + "x" * 20_000_000 + "\n").encode())
    with pytest.raises(DataSourceError) as caught:
        read_csv(huge, TWEET_COLS)
    msg = str(caught.value)
    assert "line 2" in msg and f"{csv.field_size_limit():,} characters" in msg
    assert "quoting" not in msg


def test_the_same_file_under_two_names_is_new_data_once(prefect_server, data_dir, capsys):
    from flows.cli import main as cli
    from tests.resume import parent_runs
    from tests.test_retrain import drop_tweets

    first = drop_tweets(data_dir, "batch-001.csv", 601, 801)
    assert cli(["retrain", "word2vec", *SMALL]) == 0
    (run,) = parent_runs(data_dir, "word2vec")
    rows = values(run)["train_rows"]
    assert rows == 600 + 200 - values(run)["duplicate_rows"]

    write(first.with_name("batch-002.csv"), first.read_bytes())  # read after it (name order)
    capsys.readouterr()
    assert cli(["retrain", "word2vec", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "retrain word2vec: no new data" in out
    assert "incoming batch-002.csv adds nothing: every row is already in incoming " \
           "batch-001.csv" in out  # fmt: skip
    assert len(parent_runs(data_dir, "word2vec")) == 1  # nothing trained again
    assert values(parent_runs(data_dir, "word2vec")[0])["train_rows"] == rows


def test_a_class_missing_from_the_evaluation_split_is_caught_before_training(prefect_server,
                                                                             data_dir):  # fmt: skip
    from flows.cli import main as cli
    from tests.resume import parent_runs

    # the first 13 tweets are all label 0: scikit-learn would fail after training
    assert cli(["run", "word2vec", "--profile", "quick", "--set", "data.limit_rows=13"]) == 1
    (run,) = parent_runs(data_dir, "word2vec")
    assert run.info.status == "FAILED"
    reason = run.data.tags["failure_reason"]
    assert "EvaluationSplitError" in reason and "label 0: 13 row(s)" in reason
    assert "one class only" in reason and "data.limit_rows" in reason
    built = {p.name for p in (data_dir / "stages" / "word2vec").iterdir()}
    assert built == {"ingest"}  # nothing after it ran, nothing trained
    assert not (data_dir / "checkpoints").exists()


def test_charlm_text_mostly_in_another_alphabet_is_refused(data_dir, tmp_path):
    from flows.ingest import ingest

    text = "En un lugar de la Mancha.\nΕλληνικά γράμματα σε όλο το κείμενο, και εδώ\n"
    greek = write(tmp_path / "greek.txt", text.encode())
    with pytest.raises(TextFormatError, match=r"greek.txt, line 2: 36 of its 55 letters are out"):
        ingest("charlm", [greek])
    assert not (data_dir / "incoming").exists()
