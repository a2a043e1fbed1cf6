"""Word2vec benchmarks, each a ratio measured in one run on one machine.

(a) training throughput: seqflow's parity training vs the notebook's one-pair-per-step loop
(b) preprocessing ingest -> Parquet pairs: seqflow's stages vs the notebook's `datasets.map` path
(c) the `best` profile vs gensim Word2Vec on the same tokens, epochs, window and dimension,
    as a fresh install's first run: the compile caches emptied (seqflow's kernel cache and
    numba's), the install step's kernel build (`python -m models.kernels`, what `make install`
    runs) timed on its own, then one new process times gensim and seqflow's first `best`
    training (loading the kernels included), then a second, warm one

    SEQFLOW_MIRROR=../shared/datasets .venv/bin/python bench/word2vec.py [--skip a,b,c]

Prints a markdown table for bench/RESULTS.md and writes bench/out/word2vec.json.
"""

import argparse
import json
import os
import platform
import subprocess
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
    ap.add_argument("--first-run", action="store_true", help=argparse.SUPPRESS)  # (c)'s process
    args = ap.parse_args()
    if args.first_run:
        return first_run()
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
        results["c"] = versus_gensim()

    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "word2vec.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def versus_gensim() -> dict:
    """(c): empty compile caches, the install step's build, then first_run() in a new process."""
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {
            "SEQFLOW_KERNEL_CACHE": f"{tmp}/kernels",
            "NUMBA_CACHE_DIR": f"{tmp}/numba",
            "SEQFLOW_DATA_DIR": f"{tmp}/data",
        }
        python = sys.executable
        start = time.perf_counter()
        subprocess.run([python, "-m", "models.kernels"], env=env, cwd=REPO, check=True,
                       capture_output=True)  # fmt: skip
        build_s = time.perf_counter() - start
        done = subprocess.run([python, __file__, "--first-run"], env=env, cwd=REPO, check=True,
                              capture_output=True, text=True)  # fmt: skip
    out = json.loads(done.stdout.strip().splitlines()[-1]) | {"install_build_s": build_s}
    out["ratio_with_build"] = (out["seqflow_s"] + build_s) / out["gensim_s"]
    print(f"(c) best vs gensim: first run {out['seqflow_s']:.2f}s "
          f"(warm {out['seqflow_warm_s']:.2f}s) vs {out['gensim_s']:.2f}s = {out['ratio']:.2f}x; "
          f"install-time build {build_s:.2f}s; "
          f"f1 {out['seqflow_f1']:.4f} vs {out['gensim_f1']:.4f}", flush=True)  # fmt: skip
    return out


def first_run() -> None:
    """A new process on empty data and emptied caches (but the install step's kernel build):
    preprocess with `best`'s vocabulary and windows, then gensim twice (its faster time kept),
    seqflow's first training (its kernels load inside the clock), a second one; one JSON line."""
    from gensim.models import Word2Vec as GensimWord2Vec

    best = load_config("word2vec", "best")
    t, ev = best.train, best.evaluate
    vocab, encoded, pairs = preprocess(best)
    id2tok, counts = read_vocab(vocab)
    data, distance = read_pairs(pairs), read_distances(pairs)
    ids, offsets, table = read_encoded(encoded)
    labels = table.column("label").to_numpy()
    docs = [[id2tok[i] for i in ids[offsets[r] : offsets[r + 1]]] for r in range(len(labels))]

    def gensim():
        return GensimWord2Vec(docs, vector_size=t.embed_size, window=best.windows.size,
                              epochs=t.epochs, sg=1, negative=t.negatives, sample=t.subsample,
                              min_count=1, workers=os.cpu_count(), seed=t.seed)  # fmt: skip

    gensim_model, gensim_s = min((timed(gensim) for _ in range(2)), key=lambda r: r[1])
    ours, ours_s = timed(train_word2vec, data, counts, t, distance)
    _, warm_s = timed(train_word2vec, data, counts, t, distance)
    vectors = {"seqflow": ours[0].model.word_vectors().numpy(),
               "gensim": np.stack([gensim_model.wv[w] for w in id2tok])}  # fmt: skip
    f1 = {k: downstream_f1(v, ids, offsets, labels, ev) for k, v in vectors.items()}
    print(json.dumps({
        "seqflow_s": ours_s, "seqflow_warm_s": warm_s, "gensim_s": gensim_s,
        "ratio": ours_s / gensim_s, "seqflow_f1": f1["seqflow"], "gensim_f1": f1["gensim"],
        "kernel": ours[0].kernel, "pairs": len(data), "vocab": len(id2tok),
        "setting": f"sg, dim {t.embed_size}, window {best.windows.size}, epochs {t.epochs}, "
                   f"negatives {t.negatives}, sample {t.subsample}, min count "
                   f"{best.vocab.min_count}, workers {os.cpu_count()}",
    }))  # fmt: skip


if __name__ == "__main__":
    main()
