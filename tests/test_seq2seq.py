"""Seq2Seq: data on the full archives through the mirror, the model, training and resuming."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import flows.seq2seq as seq2seq_flow
from flows.config import load_config
from models.seq2seq import Seq2Seq, count_parameters
from tasks.engine.parity import report
from tasks.train.seq2seq import bucket_batches, detokenize, fit, pad_batch
from tasks.translation import (
    PAD,
    SPECIALS,
    build_vocab_list,
    build_vocabs,
    encode_parallel,
    ingest_parallel,
    read_split,
    read_vocabs,
    tokenize_parallel,
)


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    import os

    old = os.environ.get("SEQFLOW_DATA_DIR")
    os.environ["SEQFLOW_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    cfg = load_config("seq2seq", "parity")
    rows = ingest_parallel.fn("seq2seq", "multi30k", "de", "en")
    tokens = tokenize_parallel.fn("seq2seq", rows, cfg.tokenize)
    vocab = build_vocabs.fn("seq2seq", tokens, cfg.vocab.min_freq)
    encoded = encode_parallel.fn("seq2seq", tokens, vocab)
    yield rows, tokens, vocab, encoded
    if old is None:
        os.environ.pop("SEQFLOW_DATA_DIR")
    else:
        os.environ["SEQFLOW_DATA_DIR"] = old


def test_full_data_counts_vocab_and_parameters(stages):
    rows, tokens, vocab, encoded = stages
    assert (rows.stats["train_pairs"], rows.stats["valid_pairs"], rows.stats["test_pairs"]) == (
        29000,
        1014,
        1000,
    )
    src_vocab, trg_vocab = read_vocabs(vocab)
    assert (len(src_vocab), len(trg_vocab)) == (7853, 5893)
    assert src_vocab[:4] == trg_vocab[:4] == SPECIALS
    src, trg = read_split(encoded, "train")
    assert len(src) == 29000 and src[0][0] == 2 and src[0][-1] == 3 and src[0].dtype == np.int32
    model = Seq2Seq(len(src_vocab), len(trg_vocab))
    assert count_parameters(model) == 13_898_501
    got = {"src_vocab_size": len(src_vocab), "trg_vocab_size": len(trg_vocab),
           "parameters": count_parameters(model)}  # fmt: skip
    assert report("seq2seq", seq2seq_flow.PARITY, got)[1] == []  # the parity run's checks
    # the German side is reversed: the first source token (after <sos>) is the last word
    import pyarrow.parquet as pq

    first = pq.read_table(tokens.file("train.parquet")).slice(0, 1).to_pylist()[0]
    raw = pq.read_table(rows.file("train.parquet")).slice(0, 1).to_pylist()[0]
    assert (
        first["src_tokens"][0] == "." and first["src_tokens"][-1] == raw["src"].split()[0].lower()
    )


def test_vocab_order_specials_then_count_then_alphabetical():
    docs = [["b", "a", "c", "c"], ["a", "b", "d"], ["c", "<pad>"]]
    assert build_vocab_list(docs, 2) == SPECIALS + ["c", "a", "b"]


def test_fast_loss_equals_the_notebook_forward_and_criterion():
    torch.manual_seed(0)
    model = Seq2Seq(30, 25, emb_dim=8, hid_dim=16, n_layers=2, dropout=0.5)
    src = pad_batch([np.array([2, 5, 6, 7, 3]), np.array([2, 9, 3])], "cpu")
    trg = pad_batch([np.array([2, 4, 5, 6, 7, 3]), np.array([2, 8, 3])], "cpu")
    # ratio 1 decodes in one LSTM call: its dropout masks are drawn in another order, so it
    # is compared without dropout (eval mode)
    for ratio, train in ((0.0, True), (0.5, True), (1.0, False)):
        model.train(train)
        torch.manual_seed(1)
        out = model(src, trg, ratio)
        reference = F.cross_entropy(out[1:].reshape(-1, 25), trg[1:].reshape(-1), ignore_index=PAD)
        torch.manual_seed(1)
        fast = model.loss(src, trg, PAD, ratio)
        assert torch.allclose(fast, reference, atol=1e-6), ratio


def test_buckets_reduce_padding():
    rng = np.random.default_rng(0)
    src = [np.ones(n, np.int32) for n in rng.integers(3, 40, 1000)]
    trg = [np.ones(n, np.int32) for n in rng.integers(3, 40, 1000)]
    batches = bucket_batches(src, trg, 50, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    padded = sum(max(len(src[i]) for i in b) * len(b) for b in batches)
    assert padded < 1.1 * sum(map(len, src))


def test_training_lowers_val_loss_and_resumes(stages, tmp_path):
    _, _, vocab, encoded = stages
    src_vocab, trg_vocab = read_vocabs(vocab)
    train = [x[:1500] for x in read_split(encoded, "train")]
    valid = [x[:300] for x in read_split(encoded, "valid")]
    cfg = load_config("seq2seq", "quick", ["train.epochs=1", "train.max_steps_per_epoch=20"]).train
    torch.manual_seed(0)
    model = Seq2Seq(len(src_vocab), len(trg_vocab), 32, 64, 2, 0.1)
    from tasks.train.seq2seq import evaluate_loss

    before = evaluate_loss(model, valid, 64, "cpu")
    logs = []
    hist = fit(model, train, valid, cfg, "cpu", tmp_path, log=logs.append)
    assert hist.val_loss[0] < before - 0.5 and (tmp_path / "best.pt").exists()
    longer = cfg.model_copy(update={"epochs": 2})
    again = Seq2Seq(len(src_vocab), len(trg_vocab), 32, 64, 2, 0.1)
    hist2 = fit(again, train, valid, longer, "cpu", tmp_path, log=logs.append)
    assert any("resuming after epoch 1" in line for line in logs)
    assert len(hist2.train_loss) == 2 and hist2.train_loss[0] == hist.train_loss[0]
    assert hist2.val_loss[1] < hist2.val_loss[0]


def test_detokenize():
    assert detokenize(["a", "man", "is", "n't", "here", "."]) == "a man isn't here."
    assert detokenize(["two", "dogs", "(", "black", ")", ",", "ok"]) == "two dogs (black), ok"


def test_attention_model_learns_and_masks_padding(stages, tmp_path):
    from models.attention import AttnSeq2Seq
    from tasks.train.seq2seq import evaluate_loss

    _, _, vocab, encoded = stages
    src_vocab, trg_vocab = read_vocabs(vocab)
    train = [x[:1500] for x in read_split(encoded, "train")]
    valid = [x[:300] for x in read_split(encoded, "valid")]
    torch.manual_seed(0)
    model = AttnSeq2Seq(len(src_vocab), len(trg_vocab), 32, 64, 0.1)
    # padding a source longer does not change what the model computes for it
    model.eval()
    short = pad_batch([np.array([2, 10, 11, 3])], "cpu")
    longer = torch.cat([short, torch.full((5, 1), PAD)])
    assert model.greedy(short, 2, 3, 6) == model.greedy(longer, 2, 3, 6)
    before = evaluate_loss(model, valid, 64, "cpu")
    cfg = load_config("seq2seq", "quick", ["train.epochs=1", "train.max_steps_per_epoch=20",
                                           "train.model=attention"]).train  # fmt: skip
    hist = fit(model, train, valid, cfg, "cpu", tmp_path)
    assert hist.val_loss[0] < before - 0.5
