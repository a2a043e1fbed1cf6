"""Files as users save them, at `seqflow ingest`'s door and in the readers retrain and the
flows use: a TSV with a UTF-8 byte-order mark or a header line, a CSV saved with `;` or tabs,
a compressed file or an archive whatever its extension. A fault: one line on stderr naming the
file and the fix, nothing copied. A repair: counted in ingest's line, and read the same way
when the file is trained on."""

import bz2
import csv
import gzip
import io
import lzma
import os
import subprocess
import sys
import tarfile
import zipfile

import pyarrow.parquet as pq
import pytest

from tasks.chars import TextFormatError, check_incoming
from tasks.data import DataSourceError, ingest_csv, read_csv
from tasks.pairs import check_pairs, is_header, read_tsv
from tasks.translation import ingest_parallel

PAIRS = [(f"Satz Nummer {i} über einen roten Hund.", f"Sentence number {i} about a red dog.")
         for i in range(1, 21)]  # fmt: skip
TSV = "".join(f"{de}\t{en}\n" for de, en in PAIRS).encode()


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def zipped(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("pairs.tsv", data)
    return out.getvalue()


def tarred(data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        info = tarfile.TarInfo("book.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return out.getvalue()


PACKED = {"gzip-compressed": gzip.compress, "bzip2-compressed": bz2.compress,
          "xz-compressed": lzma.compress, "a zip archive": zipped}  # fmt: skip


def refused(data_dir, pipeline: str, path, says: str) -> str:
    """`seqflow ingest` run as a user runs it: exit 2, one line naming the file, nothing copied."""
    done = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", pipeline, str(path)],
                          env=dict(os.environ), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    err = done.stderr.strip()
    assert done.returncode == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"seqflow: ingest {pipeline}: {path}"), err
    assert says in err and err.endswith("nothing was copied"), err
    folder = data_dir / "incoming" / pipeline
    assert not folder.exists() or not any(folder.iterdir())
    return err


@pytest.mark.parametrize("what", list(PACKED))
def test_a_compressed_tsv_is_named_whatever_its_extension(data_dir, tmp_path, what):
    path = write(tmp_path / "new.tsv", PACKED[what](TSV))
    err = refused(data_dir, "seq2seq", path, f"new.tsv is {what}, whatever its name says")
    assert ("`unzip new.tsv`" if "zip " in what else "new.tsv > new-plain.tsv`") in err
    faults = []  # dropped straight into the folder: retrain's reader says the same
    assert read_tsv(path, faults) == [] and what in str(faults[0])


def test_a_gzipped_csv_named_csv_gz_is_named_with_its_plain_name(data_dir, tmp_path):
    path = write(tmp_path / "batch.csv.gz", gzip.compress(b"id,label,tweet\n1,0,hi\n"))
    refused(data_dir, "word2vec", path, "`gzip -dc batch.csv.gz > batch.csv`")
    with pytest.raises(DataSourceError, match="batch.csv.gz is gzip-compressed"):
        read_csv(path, ("id", "label", "tweet"))


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (zipped(b"En un lugar de la Mancha"), "book.txt is a zip archive"),
        (tarred(b"En un lugar de la Mancha"), "book.txt is a tar archive"),
        (b"En un lugar\n\x00\x01\x02\x03 de la Mancha", "book.txt, line 2: a NUL byte"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "book.txt is a PDF document, not text"),
    ],
    ids=["zip", "tar", "nul", "pdf"],
)
def test_binary_renamed_txt_is_refused_for_charlm(data_dir, tmp_path, data, says):
    path = write(tmp_path / "book.txt", data)
    refused(data_dir, "charlm", path, says)
    with pytest.raises(TextFormatError, match=says.replace(".", r"\.")):
        check_incoming(path)  # what retrain and the flow run on the incoming folder


@pytest.mark.parametrize(
    "line", ["de\ten", "DE\tEN", " de \t en", "src\ttrg", "German\tEnglish", "source\ttarget"]
)
def test_a_first_line_naming_the_columns_is_a_header(line):
    assert is_header(line)
    assert not is_header("Ein Hund.\tA dog.") and not is_header("de\ten\tfr")
    assert is_header("FR\ten", ("fr", "en")) and not is_header("fr\ten")


def test_bom_and_header_tsvs_add_their_pairs_and_count_the_header(prefect_server, data_dir,
                                                                  tmp_path, capsys):  # fmt: skip
    from flows.cli import main as cli

    rows = ingest_parallel.fn("seq2seq", "multi30k", "de", "en", None)
    first = pq.read_table(rows.file("train.parquet")).slice(0, 1).to_pylist()[0]
    header = write(tmp_path / "a.tsv", b"de\ten\n" + TSV)
    body = [(first["src"], first["trg"]), ("Ein Satz, den es nur hier gibt.", "A one-off."),
            ("Noch einer.", "Another one.")]  # fmt: skip
    excel = write(tmp_path / "b.tsv", "\ufeffGerman\tEnglish\r\n".encode()
                  + "".join(f"{de}\t{en}\r\n" for de, en in body).encode())  # fmt: skip

    assert cli(["ingest", "seq2seq", str(header), str(excel)]) == 0
    out = capsys.readouterr().out
    assert "a.tsv (" in out and "20 new pairs, 0 duplicate pairs, 1 header line skipped)" in out
    assert "b.tsv (" in out and "2 new pairs, 1 duplicate pairs, 1 header line skipped)" in out
    folder = data_dir / "incoming" / "seq2seq"
    assert sorted(p.name for p in folder.iterdir()) == ["a.tsv", "b.tsv"]

    # the flow's add_pairs reads the copies as ingest did: no header, no BOM, the duplicate out
    report = check_pairs([], rows, [folder / "a.tsv", folder / "b.tsv"])
    assert report.added == [*PAIRS, *body[1:]]
    assert [f.notes for f in report.files] == [["1 header line skipped"]] * 2


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolon"), ("\t", "tab")])
def test_a_csv_saved_with_semicolons_or_tabs_is_read_by_its_header(prefect_server, data_dir,
                                                                   tmp_path, capsys, delimiter,
                                                                   name):  # fmt: skip
    from flows.cli import main as cli

    out = io.StringIO()
    w = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(["id", "label", "tweet"])
    w.writerows([[990_000 + i, i % 2, f"fresh tweet {i}, with a comma"] for i in range(1, 13)])
    path = write(tmp_path / "sheet.csv", out.getvalue().encode())

    assert cli(["ingest", "word2vec", str(path)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("word2vec: sheet.csv (")
    assert (
        f"12 new rows, 0 duplicate rows, read as {name}-separated (its header's delimiter)" in line
    )
    copied = data_dir / "incoming" / "word2vec" / "sheet.csv"
    table = read_csv(copied, ("id", "label", "tweet"))
    assert (
        table.delimiter == delimiter and table.columns["tweet"][0] == "fresh tweet 1, with a comma"
    )
    rows = ingest_csv.fn("word2vec", "tweets_hate_speech", "train.csv", 10, [copied])
    assert rows.stats["rows_from"] == {"train.csv": 10, "sheet.csv": 12}
