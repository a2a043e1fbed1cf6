"""Peak memory of word2vec's preprocessing on your own data as the corpus grows: data.streaming
=true (an IterableDataset read in batches straight into the Parquet shards) against
data.streaming=false (datasets.load_dataset's Arrow table), the baseline, in the same run.

    SEQFLOW_MIRROR=../shared/datasets .venv/bin/python bench/streaming.py [--scales 1 10 50]
        [--base-rows 10000]

The 1x corpus is the first --base-rows English sentences of byo/multi30k_en_fr (train); a
k-times corpus is k jsonl files of it ({"text": ...}), in a temp folder (never in the repo).
Each measurement runs in a fresh subprocess on a fresh data folder (so the `datasets` cache is
cold too): ingest (tasks/sources.ingest_source: validation and test carved from train with the
seed) -> tokenize -> vocab -> drop_rare -> windows, the stages of flows/word2vec.py::preprocess,
with the quick profile's tokenizer, vocab and windows. Peak RSS = the child's ru_maxrss
(os.wait4's rusage of that child); base = its ru_maxrss once the imports are done, before the
stages. Time = the child's wall time of the stages. Also the size of the `datasets` cache the
run left under data/hf (the Arrow copy a non-streaming load writes). Prints a markdown table;
--out writes JSON.
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
MULTI30K = "byo/multi30k_en_fr/data/train.jsonl"


def make_corpus(scale: int, folder: Path, source: Path, base_rows: int) -> Path:
    """`scale` jsonl files of the first base_rows English sentences; returns the glob."""
    lines = source.read_text(encoding="utf-8").splitlines()[:base_rows]
    texts = [json.dumps({"text": json.loads(x)["translation"]["en"]}, ensure_ascii=False)
             for x in lines]  # fmt: skip
    block = "\n".join(texts) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(scale):
        (folder / f"part-{k:04d}.jsonl").write_text(block, encoding="utf-8")
    return folder / "*.jsonl"


def one(corpus: str, streaming: bool, data: str) -> dict:
    """One measurement, in this (fresh) process."""
    import resource

    os.environ["SEQFLOW_DATA_DIR"] = data
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from flows.config import load_config
    from flows.word2vec import ingest_own
    from tasks.engine.settings import use_mirror
    from tasks.sources import ingest_source
    from tasks.text import stopword_set, tokenize_tweets
    from tasks.vocab import build_vocab, drop_rare_tokens
    from tasks.windows import window_pairs

    use_mirror(os.environ.get("SEQFLOW_MIRROR") or REPO.parent / "shared" / "datasets")
    config = load_config("word2vec", "quick", [
        f"data.source={corpus}", "data.text_column=text", "data.label_column=null",
        "data.limit_rows=null", f"data.streaming={json.dumps(streaming)}"])  # fmt: skip
    import datasets  # noqa: F401  (imports out of the base)

    stopword_set(config.tokenize.stopwords)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    rows = ingest_own(config, ingest_source.fn)
    tokens = tokenize_tweets.fn("word2vec", rows, config.tokenize)
    vocab = build_vocab.fn("word2vec", tokens, config.vocab.min_count)
    encoded = drop_rare_tokens.fn("word2vec", tokens, vocab)
    w = config.windows
    pairs = window_pairs.fn("word2vec", encoded, w.size, w.shard_rows)
    wall = time.perf_counter() - started
    cache = sum(f.stat().st_size for f in (Path(data) / "hf").rglob("*") if f.is_file())
    return {"rows": rows.stats["rows"]["all"], "pairs": pairs.stats["pairs"],
            "vocab": vocab.stats["vocab_size"], "seconds": round(wall, 2),
            "base_mb": round(base_kb / 1024), "hf_cache_mb": round(cache / 2**20, 1)}  # fmt: skip


def measure(corpus: str, streaming: bool, data: Path) -> dict:
    """Run `one` in a fresh subprocess; its peak RSS from os.wait4's rusage."""
    cmd = [sys.executable, __file__, "--one", corpus, json.dumps(streaming), str(data)]
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", TQDM_DISABLE="1")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{err.read()[-3000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    return result | {"peak_mb": round(usage.ru_maxrss / 1024)}  # Linux: ru_maxrss in KiB


def table(results: list[dict]) -> list[str]:
    lines = ["| corpus | rows | pairs | streaming | time (s) | rows/s | peak RSS (MB) "
             "| peak − base (MB) | `datasets` cache on disk (MB) |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        lines.append(
            f"| {r['scale']}x | {r['rows']:,} | {r['pairs']:,} | "
            f"{'yes' if r['streaming'] else 'no (baseline)'} | {r['seconds']:.1f} | "
            f"{r['rows'] / r['seconds']:,.0f} | {r['peak_mb']:,} | "
            f"{r['peak_mb'] - r['base_mb']:,} | {r['hf_cache_mb']:,} |"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", type=int, nargs="+", default=[1, 10, 50])
    p.add_argument("--base-rows", type=int, default=10_000)
    p.add_argument("--out", help="write the results as JSON here too")
    p.add_argument("--one", nargs=3, metavar=("CORPUS", "STREAMING", "DATA"), help="internal")
    args = p.parse_args()
    if args.one:
        corpus, streaming, data = args.one
        print(json.dumps(one(corpus, json.loads(streaming), data)), flush=True)
        return
    mirror = Path(os.environ.get("SEQFLOW_MIRROR") or REPO.parent / "shared" / "datasets")
    source = mirror / MULTI30K
    results = []
    with tempfile.TemporaryDirectory(prefix="seqflow-streaming-") as tmp:
        for scale in args.scales:
            corpus = make_corpus(scale, Path(tmp) / f"corpus-{scale}x", source, args.base_rows)
            for streaming in (False, True):
                data = Path(tmp) / f"data-{scale}x-{streaming}"
                r = measure(str(corpus), streaming, data)
                r |= {"scale": scale, "streaming": streaming}
                results.append(r)
                print(f"{scale:>3}x streaming={streaming!s:5}  rows {r['rows']:>9,}  "
                      f"{r['seconds']:7.1f} s  peak {r['peak_mb']:5} MB "
                      f"(base {r['base_mb']} MB)", flush=True)  # fmt: skip
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version()}  # fmt: skip
    print()
    print("\n".join(table(results)))
    print(f"\nmachine: {machine}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
