"""Word2vec benchmarks, each a ratio measured in one run on one machine.

(a) training throughput: seqflow's parity training vs the notebook's one-pair-per-step loop
(b) preprocessing ingest -> Parquet pairs: seqflow's stages vs the notebook's `datasets.map` path
(c) the `best` profile vs gensim Word2Vec on the same tokens, epochs, window and dimension

    SEQFLOW_MIRROR=../shared/datasets .venv/bin/python bench/word2vec.py [--skip a,b,c]

Prints a markdown table for bench/RESULTS.md and writes bench/out/word2vec.json.
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
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"

from tasks.engine.settings import use_mirror  # noqa: E402

use_mirror(os.environ["SEQFLOW_MIRROR"])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.notebook_baseline import notebook_preprocess, notebook_train_pairs_per_sec  # noqa: E402
from flows.config import load_config  # noqa: E402
from tasks.data import ingest_csv  # noqa: E402
from tasks.evaluation import downstream_f1  # noqa: E402
from tasks.text import stopword_set, tokenize_tweets  # noqa: E402
from tasks.train.word2vec import train_word2vec  # noqa: E402
from tasks.vocab import build_vocab, drop_rare_tokens, read_encoded, read_vocab  # noqa: E402
from tasks.windows import read_distances, read_pairs, window_pairs  # noqa: E402

TRAIN_CSV = Path(os.environ["SEQFLOW_MIRROR"]) / "tweets_hate_speech" / "train.csv"


def preprocess(cfg):
    """seqflow's stages, ingest -> Parquet pairs (cold: a fresh data folder)."""
    rows = ingest_csv.fn("word2vec", cfg.data.dataset, cfg.data.file, cfg.data.limit_rows)
    tokens = tokenize_tweets.fn("word2vec", rows, cfg.tokenize)
    vocab = build_vocab.fn("word2vec", tokens, cfg.vocab.min_count)
    encoded = drop_rare_tokens.fn("word2vec", tokens, vocab)
    pairs = window_pairs.fn("word2vec", encoded, cfg.windows.size, cfg.windows.shard_rows)
    return vocab, encoded, pairs


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip", default="", help="comma-separated: a,b,c")
    ap.add_argument("--loop-pairs", type=int, default=20000, help="pairs for the notebook loop")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
    }
    cfg = load_config("word2vec", "parity")
    stopword_set("english")  # warm the NLTK import for both sides
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEQFLOW_DATA_DIR"] = tmp
        (vocab, encoded, pairs), ours_pre = timed(preprocess, cfg)
        id2tok, counts = read_vocab(vocab)
        data = read_pairs(pairs)
        ids, offsets, table = read_encoded(encoded)
        labels = table.column("label").to_numpy()

        if "b" not in skip:
            base, nb_pre = timed(notebook_preprocess, str(TRAIN_CSV), f"{tmp}/hf")
            assert base["vocab"] == id2tok and np.array_equal(base["pairs"], data), "outputs differ"
            results["b"] = {"seqflow_s": ours_pre, "notebook_s": nb_pre, "ratio": ours_pre / nb_pre}
            print(f"(b) preprocessing: seqflow {ours_pre:.2f}s, notebook {nb_pre:.2f}s", flush=True)

        if "a" not in skip:
            loop = notebook_train_pairs_per_sec(data, len(id2tok), n_pairs=args.loop_pairs)
            one = cfg.train.model_copy(update={"epochs": 1})
            ours = train_word2vec(data, counts, one)[1].per_sec
            results["a"] = {"seqflow_pairs_s": ours, "notebook_pairs_s": loop, "ratio": ours / loop}
            print(f"(a) training: seqflow {ours:.0f} pairs/s, notebook loop {loop:.0f}", flush=True)

        if "c" not in skip:
            distance = read_distances(pairs)
            results["c"] = versus_gensim(data, distance, counts, id2tok, ids, offsets, labels)

    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "word2vec.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def versus_gensim(data, distance, counts, id2tok, ids, offsets, labels) -> dict:
    from gensim.models import Word2Vec as GensimWord2Vec

    best = load_config("word2vec", "best")
    t = best.train
    ev = best.evaluate
    docs = [[id2tok[i] for i in ids[offsets[r] : offsets[r + 1]]] for r in range(len(labels))]
    gensim_model, gensim_s = timed(
        lambda: GensimWord2Vec(
            docs,
            vector_size=t.embed_size,
            window=best.windows.size,
            epochs=t.epochs,
            sg=1,
            negative=t.negatives,
            min_count=1,
            workers=os.cpu_count(),
            seed=t.seed,
        )
    )
    gensim_vectors = np.stack([gensim_model.wv[w] for w in id2tok])
    # gensim's compiled code was loaded by its import above; load ours the same way, untimed
    from models.sgns_cpu import warm

    _, load_s = timed(warm)
    ours, ours_s = timed(train_word2vec, data, counts, t, distance)
    f1 = {
        name: downstream_f1(vec, ids, offsets, labels, ev)
        for name, vec in (
            ("seqflow", ours[0].model.word_vectors().numpy()),
            ("gensim", gensim_vectors),
        )
    }
    print(f"(c) best vs gensim: {ours_s:.2f}s vs {gensim_s:.2f}s, f1 {f1}", flush=True)
    return {
        "seqflow_s": ours_s,
        "gensim_s": gensim_s,
        "ratio": ours_s / gensim_s,
        "kernel_load_s": load_s,
        "seqflow_f1": f1["seqflow"],
        "gensim_f1": f1["gensim"],
        "setting": f"sg, dim {t.embed_size}, window {best.windows.size}, epochs {t.epochs}, "
        f"negatives {t.negatives}",
    }


if __name__ == "__main__":
    main()
