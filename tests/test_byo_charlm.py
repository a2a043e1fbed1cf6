"""charlm on your own text: the Republic (an English Gutenberg book) through tasks/sources.py, an
alphabet derived from its training text, a held-out split by sections or whole documents."""

import json
import math
import re
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient

from flows.config import load_config
from tasks.chars import (
    UNKNOWN,
    TextFormatError,
    check_incoming_own,
    cut_gutenberg,
    derive_alphabet,
    encode_own,
    ingest_text,
    prompt_of,
    replace_rare,
    sections,
)
from tasks.engine import tracking
from tasks.engine.tracking import values
from tasks.sources import SourceError
from tests.conftest import MIRROR

REPUBLIC = MIRROR / "byo" / "republic" / "republic.txt"
# a slice of the book: its first 120,000 characters after the Gutenberg header, cut at its
# BOOK headings into 4 sections, every 2nd held out; one tiny GRU, one epoch
SLICE = [f"data.source={REPUBLIC}", "data.limit_chars=120000", "data.section_pattern=^BOOK [IVX]+",
         "windows.test_every=2", "windows.n_train=1024", "windows.n_test=256", "train.epochs=1",
         "train.hidden=16", 'train.kinds=["gru"]']  # fmt: skip


def test_republic_quick_flow(prefect_server, data_dir):
    """The real flow on a slice: an English alphabet, held-out perplexity, English samples,
    the replacements counted, the split recorded, a pyfunc that reads English prompts."""
    import mlflow

    from flows.charlm import charlm, score

    parent = charlm(profile="quick", overrides=SLICE)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = c.get_run(parent)
    assert run.info.status == "FINISHED"
    got = values(run)
    assert math.isfinite(got["test_ppl"]) and 1 < got["test_ppl"] < got["vocab_size"] + 1
    assert got["replaced_chars"] > 0  # the slice's digits and rare signs: one symbol, counted
    assert run.data.tags["split.by"] == "pattern"
    assert "quijote" not in {i.dataset.name for i in run.inputs.dataset_inputs}  # not the course's

    vocab = json.loads(open(c.download_artifacts(parent, "vocab.json", str(data_dir))).read())
    assert {"w", "k", " ", "e", UNKNOWN} <= set(vocab) and "ñ" not in vocab
    assert vocab[0] == " " and vocab[1] == "e" and len(vocab) == got["vocab_size"]
    assert not any(c.isupper() for c in vocab)  # data.lowercase (default true)
    split = json.loads(open(c.download_artifacts(parent, "split.json", str(data_dir))).read())
    assert split["pattern"] == "^BOOK [IVX]+" and split["held_out"] == [2, 4]

    samples = open(c.download_artifacts(parent, "samples.md", str(data_dir))).read()
    assert samples.startswith("# samples: model charlm (gru), version 1, profile quick, test_ppl")
    assert "| **gru** (registered) | `the republic opens ` |" in samples  # a held-out section's
    assert "levantose" not in samples  # not the course's Spanish prompts

    # the registered pyfunc reads an English prompt with the derived alphabet
    tracking.client()  # the project's MLflow store, as tracking.load_model reads it
    writer = mlflow.pyfunc.load_model("models:/charlm/1")
    import pandas as pd

    out = writer.predict(pd.DataFrame({"prompt": ["Socrates said #"]}), params={"length": 12})
    assert out["prompt"][0] == f"socrates said {UNKNOWN}"
    assert len(out["continuation"][0]) == 12 and set(out["continuation"][0]) <= set(vocab)

    # score: the registered version on the same held-out windows
    config = load_config("charlm", "quick", SLICE)
    assert score.fn(config, 1) == pytest.approx(got["test_ppl"], rel=1e-5)


def test_text_column_mapping_error_names_the_columns(prefect_server, data_dir, tmp_path):
    """A jsonl corpus whose texts are in `body`: the default text_column fails before any
    stage, naming the columns there are and the fix."""
    from flows.charlm import charlm

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "body": f"text {i}"}) + "\n" for i in range(5)))
    with pytest.raises(SourceError) as err:
        charlm(profile="quick", overrides=[f"data.source={corpus}"])
    msg = str(err.value)
    assert "no column 'text' (data.text_column)" in msg and "its columns: id, body" in msg
    assert "--set data.text_column=" in msg
    assert not (data_dir / "stages" / "charlm").exists()  # nothing ran


def test_documents_held_out_whole(data_dir, tmp_path):
    """A corpus of many documents (jsonl, texts in `body`): whole documents are held out by
    the seeded carve; Gutenberg markers are cut from the documents that have them."""
    corpus = tmp_path / "letters.jsonl"
    docs = [f"Letter {i}. Dear friend, the weather was kind to us on day {i}." for i in range(40)]
    docs[0] = "*** START OF THE BOOK ***\nInside the book.\n*** END OF THE BOOK ***\nlicence"
    corpus.write_text("".join(json.dumps({"body": d}) + "\n" for d in docs))
    config = load_config("charlm", "quick", [f"data.source={corpus}", "data.text_column=body"])
    wanted = {"text_column": ("body", ("string",))}
    book = ingest_text.fn("charlm", config.data, config.windows.test_every, wanted)
    split = book.stats["split"]
    assert split["by"] == "documents" and book.stats["gutenberg_cut"] == 1
    assert split["held_out_documents"] > 0 and split["train_documents"] > 0
    assert split["train_documents"] + split["held_out_documents"] == 40
    assert set(split["carved"]) == {"validation", "test"}
    import pyarrow.parquet as pq

    texts = pq.read_table(book.file("sections.parquet")).column("text").to_pylist()
    assert "Inside the book." in texts[0] and "licence" not in "".join(texts)
    chars = encode_own.fn("charlm", book, True, 1)
    vocab = json.loads(chars.file("vocab.json").read_text())
    assert "L" not in vocab and "l" in vocab  # lowercased


def test_rare_characters_become_one_counted_symbol():
    counts = Counter("aaaa bbbb ccc x" + "é" * 2)
    vocab, rare = derive_alphabet(counts, min_count=3)
    assert rare == {"x": 1, "é": 2}
    assert vocab == ["a", "b", " ", "c", UNKNOWN]  # the symbol by its count (3), ties first-seen
    text, n = replace_rare("a x é, b", set(vocab) - {UNKNOWN})
    assert text == f"a {UNKNOWN} {UNKNOWN}{UNKNOWN} b" and n == 3
    # nothing rare: the symbol still closes the alphabet (held-out text may bring new ones)
    assert derive_alphabet(Counter("ab"), 1) == (["a", "b", UNKNOWN], {})
    # at most 128 symbols (int8 ids): the rarest beyond 127 become the symbol too
    many = Counter({chr(0x100 + i): 1000 - i for i in range(200)})
    vocab, rare = derive_alphabet(many, 1)
    assert len(vocab) == 128 and UNKNOWN in vocab and len(rare) == 73
    assert vocab[0] == UNKNOWN  # 73 rare characters outnumber any one kept


def test_sections_pattern_headings_blocks():
    text = "front\nBOOK I.\none\nBOOK II.\ntwo\nBOOK III.\nthree\n"
    found, how = sections(text, r"^BOOK [IVX]+", 2)
    assert found[0] == "front\n" and found[1].startswith("BOOK I.") and len(found) == 4
    assert how["by"] == "pattern"
    assert prompt_of(found[2], re.compile(r"^BOOK [IVX]+", re.M)) == "two "
    assert sections(text, None, 2)[1]["by"] == "headings"  # BOOK I ... found unasked
    blocks, how = sections("para one.\n\npara two.\n\npara three.\n\npara four.", None, 2)
    assert how == {"by": "blocks", "sections": 4} and "".join(blocks).count("para") == 4
    with pytest.raises(TextFormatError, match="fewer than windows.test_every = 10"):
        sections(text, r"^BOOK [IVX]+", 10)
    with pytest.raises(TextFormatError, match="is not a regex"):
        sections(text, "(", 2)
    assert cut_gutenberg("no markers") == ("no markers", False)


def test_incoming_checked_against_the_derived_alphabet(tmp_path):
    english = list(" etaoinshrldcumwfgypbvkjxqz,.") + [UNKNOWN]
    ok = tmp_path / "more.txt"
    ok.write_text("And so we came down to the Piraeus, and the Thracians were there.")
    assert check_incoming_own(ok, english, lowercase=True).startswith("And so")
    greek = tmp_path / "greek.txt"
    greek.write_text("Κατέβην χθὲς εἰς Πειραιᾶ μετὰ Γλαύκωνος τοῦ Ἀρίστωνος")
    with pytest.raises(TextFormatError, match="outside the alphabet derived from the training"):
        check_incoming_own(greek, english, lowercase=True)


def test_republic_retrain_on_new_english_text(prefect_server, data_dir, tmp_path):
    """`seqflow ingest` checks a new text against the alphabet derived from the book (Greek is
    refused, English taken); retrain trains a challenger with it and scores both versions on
    the book's own held-out windows."""
    from flows.ingest import ingest
    from flows.retrain import retrain

    first = retrain(pipeline="charlm", profile="quick", overrides=SLICE)
    assert first["decision"] == "first model: champion"
    greek = tmp_path / "greek.txt"
    greek.write_text("Κατέβην χθὲς εἰς Πειραιᾶ μετὰ Γλαύκωνος τοῦ Ἀρίστωνος\n" * 20)
    with pytest.raises(TextFormatError, match="outside the alphabet derived"):
        ingest("charlm", [greek], SLICE)
    more = tmp_path / "phaedrus.txt"
    more.write_text("Socrates: My dear Phaedrus, whence come you, and whither go you?\n" * 60)
    assert ingest("charlm", [more], SLICE)[0]["name"] == "phaedrus.txt"

    out = retrain(pipeline="charlm", profile="quick", overrides=SLICE)
    assert out["decision"] in ("promoted", "kept champion")
    assert out["data_fingerprint"] != first["data_fingerprint"]
    assert math.isfinite(out["challenger_score"]) and math.isfinite(out["champion_score"])
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    before = values(c.get_run(first["challenger_run"]))
    after = values(c.get_run(out["challenger_run"]))
    assert after["train_windows"] > before["train_windows"]
    assert after["test_windows"] == before["test_windows"]
