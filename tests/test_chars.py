"""Character-level data: Gutenberg markers, the notebook's vocabulary, windows, chapter split."""

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

import flows.charlm as charlm_flow
from tasks.chars import (
    TextFormatError,
    book_text,
    by_count,
    chapters,
    encode_chars,
    ingest_book,
    normalize,
    read_chars,
    split_windows,
    strip_gutenberg,
    windows,
)
from tasks.engine.parity import report

PARITY_ORDER = " eaosnrlduitcmpqybhvgíjóféázñúxwkü"


def test_markers_are_required():
    text = "header\n*** START OF THE BOOK ***\nCapítulo I. Hola\n*** END OF THE BOOK ***\nlicence"
    assert strip_gutenberg(text).strip() == "Capítulo I. Hola"
    with pytest.raises(TextFormatError, match="START OF"):
        strip_gutenberg("no markers at all", "book.txt")


def test_normalize_and_vocab_order():
    assert normalize("¡Hola, Señor!  ¿Qué tal?\r\n") == " hola señor qué tal "
    assert by_count(Counter("abba c")) == ["a", "b", " ", "c"]  # ties keep first-seen order


def test_chapters_rejoin_to_the_whole_text():
    body = "front\n\nCapítulo I. Uno.\nTexto, uno.\n\n  Capítulo II. Dos\nTexto dos."
    parts = chapters(body)
    assert len(parts) == 3 and parts[1].startswith("Capítulo I.")
    assert "".join(normalize(p) for p in parts) == normalize(body)


def test_windows_match_the_notebook_range():
    ids = np.arange(40, dtype=np.int8)
    w = windows(ids, 33)
    assert w.shape == (40 - 33, 33) and w[0, 0] == 0 and w[-1, -1] == 38
    assert windows(ids, 33, stride=3).shape == (3, 33)


def test_chapter_split_keeps_test_text_out_of_training_windows():
    chaps = [np.full(200, i, dtype=np.int8) for i in range(12)]
    cfg = SimpleNamespace(split="chapters", length=32, stride=4, test_every=4)
    train, test = split_windows(chaps, cfg)
    held = {3, 7, 11}
    assert set(np.unique(test)) == held and not held & set(np.unique(train))
    assert train.shape[1] == test.shape[1] == 33


def test_full_text_through_the_mirror(data_dir):
    book = ingest_book.fn("charlm", "quijote", "2000-0.txt")
    body = book.file("body.txt").read_text(encoding="utf-8")
    assert "*** START" not in body and "PROJECT GUTENBERG" not in body.upper()[-5000:]
    vocab, chaps = read_chars(encode_chars.fn("charlm", book, notebook_text=True))
    assert "".join(vocab) == PARITY_ORDER and len(vocab) == 34
    # what the charlm parity run checks at its end
    assert (
        report("charlm", charlm_flow.PARITY, {"vocab_size": 34, "vocab": "".join(vocab)})[1] == []
    )
    assert book_text(book, True).lstrip().startswith("Capítulo primero")
    n = sum(map(len, chaps))
    cfg = SimpleNamespace(split="parity", length=32, n_train=20480, n_test=5120)
    train, test = split_windows(chaps, cfg)
    assert train.shape == (20480, 33) and test.shape == (5120, 33)
    flat = np.concatenate(chaps)
    assert np.array_equal(train[5], flat[5:38]) and np.array_equal(test[0], flat[20480:20513])
    assert n > 2_000_000
    book_only, _ = read_chars(encode_chars.fn("charlm", book, notebook_text=False))
    assert len(book_only) == 33 and "k" not in book_only  # 'k' only occurs in the licence


def test_incoming_texts_only_add_training_windows(data_dir):
    folder = data_dir / "incoming" / "charlm"
    folder.mkdir(parents=True)
    (folder / "b.txt").write_text("¡Sancho, amigo! Kilo.\n" * 20, encoding="utf-8")
    (folder / "a.txt").write_text(
        "header\n*** START OF X ***\nEn un lugar de la Mancha\n*** END OF X ***\nlicence",
        encoding="utf-8",
    )
    from tasks.data import incoming_files

    found = incoming_files("charlm", ".txt")
    assert [p.name for p in found] == ["a.txt", "b.txt"]
    base = encode_chars.fn("charlm", ingest_book.fn("charlm", "quijote", "2000-0.txt"), False)
    book = ingest_book.fn("charlm", "quijote", "2000-0.txt", found)
    enc = encode_chars.fn("charlm", book, notebook_text=False)
    assert enc.fingerprint != base.fingerprint
    assert read_chars(enc)[0] == read_chars(base)[0]  # the book's vocabulary, unchanged
    vocab, extra = read_chars(enc, "incoming")
    texts = ["".join(vocab[i] for i in t) for t in extra]
    assert texts[0] == " en un lugar de la mancha "  # Gutenberg markers stripped
    assert texts[1].startswith(" sancho amigo ilo ")  # 'k' is not in the book: dropped
    assert enc.stats["incoming_dropped"] == 20
    cfg = SimpleNamespace(split="chapters", length=16, stride=4, test_every=10)
    _, chaps = read_chars(enc)
    train0, test0 = split_windows(chaps, cfg)
    train1, test1 = split_windows(chaps, cfg, extra)
    assert np.array_equal(test0, test1) and len(train1) > len(train0)
    assert np.array_equal(train1[: len(train0)], train0)


def test_incoming_text_not_utf8_names_the_file(data_dir):
    bad = data_dir / "incoming" / "charlm" / "latin1.txt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes("Señor".encode("latin-1"))
    with pytest.raises(TextFormatError, match="latin1.txt: not UTF-8.*save it as UTF-8"):
        ingest_book.fn("charlm", "quijote", "2000-0.txt", [bad])
    assert bad.exists()


def test_chapter_split_on_the_full_book(data_dir):
    """The best profile's split on the real text: whole chapters held out, no test text inside
    any training window."""
    from flows.config import load_config

    cfg = load_config("charlm", "best")
    book = ingest_book.fn("charlm", "quijote", "2000-0.txt")
    vocab, chaps = read_chars(encode_chars.fn("charlm", book, cfg.data.notebook_text))
    train, test = split_windows(chaps, cfg.windows)
    width = cfg.windows.length + 1
    held = [
        c for i, c in enumerate(chaps) if i % cfg.windows.test_every == cfg.windows.test_every - 1
    ]
    assert len(test) == sum(
        len(c) - width > 0 and len(range(0, len(c) - width, width)) for c in held
    )
    text = "".join(vocab[i] for w in train for i in w)
    step = max(1, len(test) // 200)
    for w in test[::step]:
        assert "".join(vocab[i] for i in w) not in text
    assert len(train) == sum(
        len(range(0, len(c) - width, cfg.windows.stride))
        for i, c in enumerate(chaps)
        if i % cfg.windows.test_every != cfg.windows.test_every - 1
    )
    share = sum(map(len, held)) / sum(map(len, chaps))  # of the text, whatever the stride
    assert 0.05 < share < 0.2
