"""Subword units for seq2seq (tasks/subword.py): cased round trips, unseen words and characters
without <unk>, the vocabulary holding every piece, and a flow on a slice that serves them."""

import pyarrow.parquet as pq
import pytest

from flows.config import load_config
from tasks.subword import MODEL, Subword, train_subword
from tasks.train.seq2seq import to_text
from tasks.translation import (
    SPECIALS,
    UNK,
    build_vocabs,
    encode,
    ingest_parallel,
    read_vocabs,
    tokenize_parallel,
)

UNSEEN = [
    "Ein Mann fährt Fahrrad.",
    "Zwei Männer stehen am Strand.",
    "A man rides a bicycle.",
    "Der Quokka-Züchter aus Ærøskøbing trinkt Kaffee für 3,50 €!",  # words and letters unseen
    "Ein Hund 🐕 läuft — schnell — über die Straße (im Regen).",  # emoji, dashes, brackets
]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SEQFLOW_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    cfg = load_config("seq2seq", "best", ["data.limit_train=1500", "tokenize.subword_vocab=600"])
    rows = ingest_parallel.fn("seq2seq", "multi30k", "de", "en", 1500)
    sub = train_subword.fn("seq2seq", rows, cfg.tokenize)
    tokens = tokenize_parallel.fn("seq2seq", rows, cfg.tokenize, sub)
    vocab = build_vocabs.fn("seq2seq", tokens, cfg.vocab.min_freq, sub)
    yield cfg, rows, sub, tokens, vocab
    mp.undo()


def test_cased_text_and_unseen_words_round_trip_without_unk(stages):
    cfg, _, sub, _, vocab = stages
    model = Subword.read(sub.file(MODEL))
    src_vocab, trg_vocab = read_vocabs(vocab)
    assert src_vocab == trg_vocab and src_vocab[:4] == SPECIALS  # one joint vocabulary
    assert len(set(src_vocab)) == len(src_vocab) <= 600 + len(SPECIALS)
    pieces = model.encode(UNSEEN)
    assert [model.decode(p) for p in pieces] == UNSEEN  # cased, spaced exactly as written
    assert any(p.startswith("<0x") for p in pieces[4])  # the emoji: byte pieces
    ids = encode(pieces, src_vocab)
    assert all(UNK not in row for row in ids)  # every piece, bytes included, has an id
    words = [[trg_vocab[i] for i in row[1:-1]] for row in ids]  # <sos> ... <eos> dropped
    assert [to_text(w, "en", model) for w in words] == UNSEEN
    assert to_text(["<sos>", *words[2], "<eos>"], "en", model) == "A man rides a bicycle."


def test_lowercasing_is_a_setting_not_the_default_of_subwords(stages):
    cfg, rows, sub, _, _ = stages
    assert cfg.tokenize.lowercase is False and cfg.tokenize.subword == "sentencepiece"
    low = cfg.tokenize.model_copy(update={"lowercase": True})
    lowered = train_subword.fn("seq2seq", rows, low)
    assert lowered.path != sub.path  # its own stage key
    model = Subword.read(lowered.file(MODEL))
    assert model.decode(model.encode(["Ein Mann."], lowercase=True)[0]) == "ein mann."
    assert not any(p != p.lower() for p in model.pieces() if not p.startswith("<0x"))


def test_the_tokenize_stage_holds_pieces_and_reverses_the_source_when_asked(stages):
    cfg, rows, sub, tokens, _ = stages
    table = pq.read_table(tokens.file("train.parquet"))
    src = pq.read_table(rows.file("train.parquet")).column("src").to_pylist()
    model = Subword.read(sub.file(MODEL))
    assert table.column("src_tokens")[0].as_py() == model.encode([src[0]])[0]
    flipped = tokenize_parallel.fn(
        "seq2seq", rows, cfg.tokenize.model_copy(update={"reverse_src": True}), sub
    )
    first = pq.read_table(flipped.file("train.parquet")).column("src_tokens")[0].as_py()
    assert first == model.encode([src[0]])[0][::-1]
    assert 300 < sub.stats["pieces"] <= 600 and sub.stats["texts"] == 2 * 1500


def test_a_subword_flow_scores_cased_and_serves_plain_text(prefect_server, data_dir):
    from mlflow.tracking import MlflowClient

    from flows.seq2seq import seq2seq, subword_of
    from flows.translator import load
    from tasks.engine import tracking

    run_id = seq2seq(profile="best", overrides=[
        "data.limit_train=800", "tokenize.subword_vocab=500", "train.epochs=1",
        "train.emb_dim=32", "train.hid_dim=64", "train.n_layers=1", "train.heads=2",
        "train.average_last=0", "evaluate.beam=1", "evaluate.max_len=12"])  # fmt: skip
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    run = MlflowClient(tracking_uri=uri, registry_uri=uri).get_run(run_id)
    m = run.data.metrics
    assert {"test_bleu", "test_sacrebleu_cased", "test_bleu_tok", "test_chrf"} <= set(m)
    assert m["test_unk_outputs"] == 0
    signature = run.data.params["sacrebleu_signature"]
    assert "case:mixed" in signature and "tok:13a" in signature
    assert [s["stage"] for s in tracking.lineage(run_id)][:2] == ["ingest", "subword"]
    translator = load(1)
    assert translator.subword is not None  # the SentencePiece model travelled with it
    out, _ = translator.translate(["Ein Quokka fährt Fahrrad.", "", "Zwei Männer."])
    assert len(out) == 3 and out[1] == "" and all("<unk>" not in t for t in out)
    assert subword_of([]) is None


def test_word_level_translations_keep_their_detokenizer():
    words = ["a", "man", "rides", "a", "bicycle", "."]
    assert to_text(words, "en", None) == "a man rides a bicycle."
