"""Seq2Seq training step: seqflow vs the notebook's, same model, same CPU, one run; and the
`best` profile's Transformer step vs a plain reference loop of the same model.

notebook: random batches of 128 (no bucketing), `model(src, trg)` filling a [len, batch, vocab]
          buffer step by step, CrossEntropyLoss(ignore_index=<pad>) over all of it.
seqflow:  length-bucketed batches, `model.loss`: the output projection once, non-pad tokens only.
Both: Adam, clip 1, teacher forcing 0.5, the parity model (13,898,501 parameters).

Transformer (`--transformer`): reference = random batches of 128 sentences padded to the
longest, the vocabulary projection and a label-smoothed loss (ignore_index=<pad>) over every
position; seqflow = the recipe's own step (token-budget length-bucketed batches, the projection
on non-pad positions only). Same model, optimizer, warm-up and clipping.

Also checks that the two losses agree step by step when fed the same batches and seeds.
Writes bench/out/seq2seq.json (bench/out/seq2seq_transformer.json).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("SEQFLOW_MIRROR", str(REPO.parent / "shared" / "datasets"))
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from flows.config import load_config  # noqa: E402
from models.seq2seq import Seq2Seq  # noqa: E402
from tasks.engine.settings import use_mirror  # noqa: E402
from tasks.train.seq2seq import bucket_batches, pad_batch, random_batches  # noqa: E402
from tasks.translation import (  # noqa: E402
    PAD,
    build_vocabs,
    encode_parallel,
    ingest_parallel,
    read_split,
    read_vocabs,
    tokenize_parallel,
)


def notebook_loss(model, src, trg):
    out = model(src, trg, 0.5)  # the notebook's forward: a zeros buffer, filled step by step
    return F.cross_entropy(out[1:].reshape(-1, out.shape[-1]), trg[1:].reshape(-1),
                           ignore_index=PAD)  # fmt: skip


def fast_loss(model, src, trg):
    return model.loss(src, trg, PAD, 0.5)


def run(model, data, batches, loss_fn, seed):
    """Train on `batches`; returns (losses, target tokens, seconds)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters())
    model.train()
    src, trg = data
    losses, tokens = [], 0
    start = time.perf_counter()
    for idx in batches:
        s, t = pad_batch([src[i] for i in idx], "cpu"), pad_batch([trg[i] for i in idx], "cpu")
        opt.zero_grad()
        loss = loss_fn(model, s, t)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        tokens += int((t[1:] != PAD).sum())
    return losses, tokens, time.perf_counter() - start


def fresh(vocabs, seed=0):
    torch.manual_seed(seed)
    return Seq2Seq(len(vocabs[0]), len(vocabs[1]))


def reference_loss(model, src, trg):
    """The plain loss: logits at every target position, padding ignored by the criterion."""
    s, t = src.T, trg.T
    memory, mask = model.encode(s)
    logits = model.logits(model.decode(t[:, :-1], memory, mask))  # [B, T-1, V]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1),
                           ignore_index=PAD, label_smoothing=model.smoothing)  # fmt: skip


def prepare(profile: str):
    """(config, vocabularies, train split, valid split) of a profile, built in a temp folder."""
    cfg = load_config("seq2seq", profile)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEQFLOW_DATA_DIR"] = tmp
        rows = ingest_parallel.fn("seq2seq", "multi30k", "de", "en")
        tokens = tokenize_parallel.fn("seq2seq", rows, cfg.tokenize)
        vocab = build_vocabs.fn("seq2seq", tokens, 2)
        encoded = encode_parallel.fn("seq2seq", tokens, vocab)
        return cfg, read_vocabs(vocab), read_split(encoded, "train"), read_split(encoded, "valid")


def transformer(args) -> None:
    from tasks.train.seq2seq import Seq2SeqRecipe

    cfg, vocabs, train, valid = prepare("best")

    def recipe():
        return Seq2SeqRecipe(train, valid, len(vocabs[0]), len(vocabs[1]), cfg.train)

    def step(r, loss_fn, s, t):
        r.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(r.model, s, t)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(r.model.parameters(), cfg.train.clip)
        r.optimizer.step()
        r.scheduler.step()
        return loss.item()

    # same batches, same seeds: the two losses are the same number
    same = random_batches(len(train[0]), 128, np.random.default_rng(1))[: args.check_steps]
    gaps = []
    a, b = recipe(), recipe()
    for idx in same:
        s, t = pad_batch([train[0][i] for i in idx], "cpu"), pad_batch([train[1][i] for i in idx],
                                                                       "cpu")  # fmt: skip
        torch.manual_seed(5)
        x = step(a, reference_loss, s, t)
        torch.manual_seed(5)
        y = step(b, lambda m, s, t: m.loss(s, t, PAD), s, t)
        gaps.append(abs(x - y))
    gap = max(gaps)
    print(f"same batches: max loss gap {gap:.2e}")
    assert gap < 1e-5, gap

    def timed(r, batches, loss_fn):
        r.model.train()
        tokens, losses = 0, []
        start = time.perf_counter()
        for idx in batches:
            s = pad_batch([train[0][i] for i in idx], "cpu")
            t = pad_batch([train[1][i] for i in idx], "cpu")
            losses.append(step(r, loss_fn, s, t))
            tokens += int((t[1:] != PAD).sum())
        return tokens / (time.perf_counter() - start), losses

    ref = random_batches(len(train[0]), 128, np.random.default_rng(2))[: args.steps]
    ours_recipe = recipe()
    ours = [b.idx for b in ours_recipe.batches(0)][: args.steps]
    timed(recipe(), ref[:2], reference_loss)  # warm-up
    ref_rate, ref_losses = timed(recipe(), ref, reference_loss)
    our_rate, our_losses = timed(ours_recipe, ours, lambda m, s, t: m.loss(s, t, PAD))
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
        "steps": args.steps,
        "parameters": sum(p.numel() for p in ours_recipe.model.parameters()),
        "reference": {"target_tokens_per_sec": ref_rate, "losses": ref_losses},
        "seqflow": {"target_tokens_per_sec": our_rate, "losses": our_losses},
        "ratio": our_rate / ref_rate,
        "same_batches_max_loss_gap": gap,
    }
    print(json.dumps(result, indent=2))
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "seq2seq_transformer.json").write_text(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12, help="timed training steps per side")
    ap.add_argument("--check-steps", type=int, default=5, help="steps of the exactness check")
    ap.add_argument("--transformer", action="store_true", help="the best profile's Transformer")
    args = ap.parse_args()
    use_mirror(os.environ["SEQFLOW_MIRROR"])
    if args.transformer:
        return transformer(args)
    _, vocabs, train, _ = prepare("parity")

    # same batches, same seeds: the fast loss is the notebook's loss
    same = random_batches(len(train[0]), 128, np.random.default_rng(1))[: args.check_steps]
    a, _, _ = run(fresh(vocabs), train, same, notebook_loss, 7)
    b, _, _ = run(fresh(vocabs), train, same, fast_loss, 7)
    gap = float(np.max(np.abs(np.array(a) - np.array(b))))
    print(f"same batches: notebook {np.round(a, 4)}, seqflow {np.round(b, 4)}, max gap {gap:.2e}")

    rng = np.random.default_rng(2)
    nb_batches = random_batches(len(train[0]), 128, rng)[: args.steps]
    ours_batches = bucket_batches(*train, 128, np.random.default_rng(2))[: args.steps]
    run(fresh(vocabs), train, nb_batches[:1], notebook_loss, 3)  # warm-up
    nb_loss, nb_tok, nb_s = run(fresh(vocabs), train, nb_batches, notebook_loss, 3)
    our_loss, our_tok, our_s = run(fresh(vocabs), train, ours_batches, fast_loss, 3)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
        "steps": args.steps,
        "notebook": {
            "tokens_per_sec": nb_tok / nb_s,
            "sec_per_step": nb_s / args.steps,
            "losses": nb_loss,
        },  # fmt: skip
        "seqflow": {
            "tokens_per_sec": our_tok / our_s,
            "sec_per_step": our_s / args.steps,
            "losses": our_loss,
        },  # fmt: skip
        "ratio": (our_tok / our_s) / (nb_tok / nb_s),
        "same_batches_max_loss_gap": gap,
    }
    print(json.dumps(result, indent=2))
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "seq2seq.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
