"""The Transformer translator: masking, beam search, token batches, BLEU both ways, and the
`best` profile on a slice end to end: beam metrics, the pyfunc champion and the translate CLI's
one-line-per-line rules."""

import io
import json
import sys

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from models.transformer import Transformer
from tasks.engine.tracking import values
from tasks.train.seq2seq import bucket_batches, token_bleu


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return Transformer(50, 60, 32, 4, 2, 2, 64, 0.0).eval()


def test_decoder_is_causal_and_source_padding_is_masked(tiny):
    src = torch.randint(4, 50, (7, 3))
    src[5:, 0] = 1  # sentence 0: two pads
    trg = torch.randint(4, 60, (9, 3))
    memory, mask = tiny.encode(src.T)
    a = tiny.decode(trg.T, memory, mask)
    changed = trg.clone()
    changed[5:] = 7
    b = tiny.decode(changed.T, memory, mask)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)  # earlier positions never look ahead
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    alone = tiny.decode(trg[:, :1].T, *tiny.encode(src[:5, :1].T))  # no pads at all
    assert torch.allclose(alone[0], a[0], atol=1e-5)


def test_beam_is_batched_and_width_one_is_greedy(tiny):
    src = torch.randint(4, 50, (6, 4))
    together = tiny.beam(src, 2, 3, 12, 4, 0.6)
    for j in range(4):
        assert tiny.beam(src[:, j : j + 1], 2, 3, 12, 4, 0.6)[0] == together[j]
    greedy = []  # step by step, one sentence at a time
    for j in range(4):
        memory, mask = tiny.encode(src[:, j : j + 1].T)
        seq = [2]
        for _ in range(12):
            nxt = int(tiny.logits(tiny.decode(torch.tensor([seq]), memory, mask))[0, -1].argmax())
            if nxt == 3:
                break
            seq.append(nxt)
        greedy.append(seq[1:])
    assert tiny.greedy(src, 2, 3, 12) == greedy


def test_beam_never_scores_below_greedy(tiny):
    """With no length penalty, the beam's winner has at least greedy's log-probability."""
    src = torch.randint(4, 50, (6, 8))

    def logp(j, seq):
        memory, mask = tiny.encode(src[:, j : j + 1].T)
        ids = torch.tensor([[2, *seq, 3]])
        lp = torch.log_softmax(tiny.logits(tiny.decode(ids[:, :-1], memory, mask)), -1)
        return float(lp[0].gather(1, ids[0, 1:, None]).sum())

    greedy, beam = tiny.greedy(src, 2, 3, 40), tiny.beam(src, 2, 3, 40, 5, 0.0)
    for j in range(8):
        if len(greedy[j]) < 40 and len(beam[j]) < 40:  # both finished
            assert logp(j, beam[j]) >= logp(j, greedy[j]) - 1e-4


def test_token_batches_cover_every_pair_once_within_budget():
    rng = np.random.default_rng(0)
    src = [np.arange(rng.integers(2, 30)) for _ in range(500)]
    trg = [np.arange(rng.integers(2, 30)) for _ in range(500)]
    batches = bucket_batches(src, trg, 0, np.random.default_rng(1), max_tokens=300)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for b in batches:
        longest = max(max(len(src[i]), len(trg[i])) for i in b)
        assert len(b) * longest <= 300 or len(b) == 1


def test_token_bleu_is_the_tutorials_bleu():
    """The pytorch-seq2seq tutorials' torchtext bleu_score = NLTK's corpus BLEU (4-grams,
    uniform weights, no smoothing), on the same token lists. (NLTK counts 1 n-gram for a
    hypothesis shorter than n, torchtext 0: every hypothesis here has 5 tokens or more.)"""
    from nltk.translate.bleu_score import corpus_bleu

    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(12)]
    refs = [list(rng.choice(words, rng.integers(7, 15))) for _ in range(200)]
    hyps = [r[: len(r) - int(rng.integers(0, 3))] for r in refs]
    for h in hyps:
        h[int(rng.integers(0, len(h)))] = "<unk>"
    expected = 100 * corpus_bleu([[r] for r in refs], hyps)
    assert token_bleu(hyps, refs) == pytest.approx(expected, abs=1e-6)


TINY = ["data.limit_train=600", "train.epochs=2", "train.max_steps_per_epoch=4",
        "train.emb_dim=32", "train.hid_dim=64", "train.n_layers=1", "train.heads=2",
        "train.max_tokens=600", "train.average_last=2", "train.warmup=4",
        "evaluate.beam=3", "evaluate.examples=4", "evaluate.max_len=20",
        "evaluate.max_src_tokens=8"]  # fmt: skip


def test_best_profile_on_a_slice_serves_a_pyfunc(prefect_server, data_dir, capsys, monkeypatch):
    from flows.cli import main as cli
    from flows.seq2seq import load_translator, seq2seq
    from flows.translator import BadInput

    run_id = seq2seq(profile="best", overrides=TINY)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    m = values(c.get_run(run_id))
    for key in ("test_bleu", "test_bleu_tok", "test_chrf", "test_bleu_greedy",
                "test_bleu_tok_greedy", "test_chrf_greedy", "test_bleu_beam"):  # fmt: skip
        assert 0 <= m[key] <= 100, key
    assert m["test_bleu"] == m["test_bleu_beam"] and m["beam_width"] == 3
    history = c.get_metric_history(run_id, "val_loss")
    assert [h.step for h in history] == [0, 1]
    text = open(c.download_artifacts(run_id, "translations.md", str(data_dir))).read()
    assert text.startswith("# test translations: model seq2seq, version 1, profile best, ")
    assert text.splitlines()[2] == "| source | reference | greedy | beam |"
    assert text.count("\n") == 2 + 2 + 4

    model, version = load_translator()
    assert version == 1
    out, cut = model.translate(["Ein Mann.", "", "   ", "Zwei Hunde laufen."])
    assert len(out) == 4 and out[1] == out[2] == "" and out[0] and out[3]
    assert cut == []
    long = " ".join(["Hund"] * 10_000)
    out, cut = model.translate([long])
    assert len(out[0].split()) <= 20 and cut == [(0, "10000 tokens, cut to the first 8")]
    with pytest.raises(BadInput, match="input 2 is int"):
        model.translate(["Ein Mann.", 5])
    assert model.translate(["Ein Mann."], beam=1)[0] == model.translate(["Ein Mann."], beam=1)[0]

    lines = ["Ein Mann fährt Fahrrad.", "", "  ", "Zwei Hunde spielen im Schnee.", ""]
    path = data_dir / "in.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert cli(["translate", "--file", str(path)]) == 0
    got = capsys.readouterr().out.split("\n")[:-1]
    assert len(got) == len(lines)
    assert [g == "" for g in got] == [not line.strip() for line in lines]
    monkeypatch.setattr(sys, "stdin", io.StringIO(path.read_text(encoding="utf-8")))
    assert cli(["translate", "--file", "-"]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == got
    assert cli(["translate", ""]) == 0
    assert capsys.readouterr().out == "\n"
    assert cli(["translate", " ".join(["Hund"] * 30)]) == 0
    assert "argument 1: 30 tokens, cut to the first 8" in capsys.readouterr().err

    # MLflow's own scoring server on the champion, over HTTP
    from tests.servers import Stack, post

    stack = Stack(data_dir)
    try:
        url = stack.model_server("models:/seq2seq@champion", uri) + "/invocations"
        rows = [{"text": "Ein Mann fährt Fahrrad."}, {"text": ""}, {"text": "Zwei Hunde."}]
        status, body = post(url, json.dumps({"dataframe_records": rows}).encode())
        assert status == 200, body
        local, _ = model.translate([r["text"] for r in rows])
        assert body["predictions"] == local and local[1] == ""
        status, body = post(url, json.dumps({"dataframe_records": [{"text": long}]}).encode())
        assert status == 200 and len(body["predictions"][0].split()) <= 20
        status, body = post(url, json.dumps({"dataframe_records": [{"text": 5}]}).encode())
        assert status == 400 and "input 1 is int, not text" in body["message"]
        status, body = post(url, b"not json")
        assert status == 400
        status, body = post(url, json.dumps({"dataframe_records": rows[:1]}).encode())
        assert status == 200 and body["predictions"] == local[:1]  # still serving
    finally:
        stack.stop()
