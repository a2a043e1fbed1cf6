"""Scaling of word2vec preprocessing: throughput vs Dask workers, time and peak memory vs size.

    python bench/scaling.py                          # 1x, 10x sequential and on 1, 2 workers
    python bench/scaling.py --scales 1 10 100 --workers   # sizes only, sequential
    python bench/scaling.py --one dask 10 2          # one measurement (what the above run)

A k-times corpus is the tweets file plus k-1 resampled copies (rows drawn with replacement,
seeded) given to ingest as incoming CSVs, all in a temp folder (never in the repo). Each
measurement runs in a fresh process on a fresh data folder: ingest -> tokenize -> vocab ->
drop_rare -> windows with the parity config. Time = the stages' own seconds (their manifests;
the Dask run's cluster start-up is not in it); peak memory = the highest summed RSS of the
process and its children (Dask workers), sampled every 50 ms, less the RSS before the stages.
"""

import argparse
import csv
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
STAGES = ("ingest", "tokenize", "vocab", "drop_rare", "windows")


def make_corpus(scale: int, folder: Path, source: Path, seed: int = 2023) -> list[Path]:
    """scale-1 CSVs of len(source) rows each, resampled from `source`, ids kept unique."""
    text = source.read_bytes().decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    header, rows = next(reader), [r for r in reader if r]
    rng = random.Random(seed)
    files = []
    for k in range(1, scale):
        path = folder / f"resample-{k:04d}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for i in range(len(rows)):
                row = list(rng.choice(rows))
                row[0] = str(k * len(rows) + i + 1)
                writer.writerow(row)
        files.append(path)
    return files


class PeakRSS:
    """Highest summed RSS of this process and all its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.05):
        import psutil

        self.proc, self.every, self.peak, self._stop = psutil.Process(), every, 0, False

    def now(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:  # a child that just exited
                pass
        return total

    def __enter__(self):
        self.base = self.now()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self.now())
            time.sleep(self.every)

    def __exit__(self, *exc):
        self._stop = True
        self.thread.join()
        self.peak = max(self.peak, self.now())


def one(mode: str, scale: int, workers: int, folder: Path) -> dict:
    """One measurement in this process (run it in a fresh one)."""
    from flows.config import load_config
    from tasks.engine.settings import use_mirror

    use_mirror(os.environ.get("SEQFLOW_MIRROR") or REPO.parent / "shared" / "datasets")
    os.environ["SEQFLOW_DATA_DIR"] = str(folder / f"data-{mode}-{scale}x-{workers}")
    config = load_config("word2vec", "parity")
    stage_peaks: dict[str, int] = {}
    incoming = sorted((folder / f"corpus-{scale}x").glob("*.csv"))
    if mode == "sequential":
        from tasks.data import ingest_csv
        from tasks.text import tokenize_tweets
        from tasks.vocab import build_vocab, drop_rare_tokens
        from tasks.windows import window_pairs

        def run():
            def stage(fn, *args):  # each stage's own peak too
                with PeakRSS() as mem:
                    out = fn("word2vec", *args)
                stage_peaks[out.stage] = round(mem.peak / 2**20)
                return out

            rows = stage(ingest_csv.fn, "tweets_hate_speech", "train.csv", None, incoming)
            tokens = stage(tokenize_tweets.fn, rows, config.tokenize)
            vocab = stage(build_vocab.fn, tokens, config.vocab.min_count)
            encoded = stage(drop_rare_tokens.fn, tokens, vocab)
            w = config.windows
            return [rows, tokens, vocab, encoded,
                    stage(window_pairs.fn, encoded, w.size, w.shard_rows)]  # fmt: skip
    else:
        from prefect import flow

        from flows.runners import with_runner
        from flows.word2vec import preprocess

        @flow(name="word2vec-preprocess")
        def preprocess_flow():
            return preprocess(config, incoming)

        run = with_runner(preprocess_flow, "dask", workers=workers, processes=True)
    import tasks.text  # noqa: F401  (imports out of the memory baseline)

    started = time.perf_counter()
    with PeakRSS() as mem:
        stages = run()
    wall = time.perf_counter() - started
    from tasks.engine.stage import read_manifest

    seconds = {s.stage: read_manifest(Path(s.path))["seconds"] for s in stages}
    return {"mode": mode, "scale": scale, "workers": workers, "rows": stages[0].stats["rows"],
            "pairs": stages[4].stats["pairs"], "vocab": stages[2].stats["vocab_size"],
            "stage_seconds": seconds, "seconds": round(sum(seconds.values()), 2),
            "wall_seconds": round(wall, 2), "base_mb": round(mem.base / 2**20),
            "peak_mb": round(mem.peak / 2**20),
            "peak_over_base_mb": round((mem.peak - mem.base) / 2**20),
            "stage_peak_mb": stage_peaks}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    p.add_argument("--folder", help="temp folder to reuse (default: a new one, removed after)")
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "scaling.json"))
    p.add_argument("--one", nargs=3, metavar=("MODE", "SCALE", "WORKERS"))
    args = p.parse_args()
    if args.one:
        mode, scale, workers = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps(one(mode, scale, workers, Path(args.folder))), flush=True)
        return
    tmp = tempfile.TemporaryDirectory(prefix="seqflow-scaling-") if not args.folder else None
    folder = Path(args.folder or tmp.name)
    from tasks.data import fetch
    from tasks.engine.catalog import DATASETS
    from tasks.engine.settings import use_mirror

    use_mirror(os.environ.get("SEQFLOW_MIRROR") or REPO.parent / "shared" / "datasets")
    source = fetch(DATASETS["tweets_hate_speech"], "train.csv")
    results = []
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", TQDM_DISABLE="1")
    for scale in args.scales:
        corpus = folder / f"corpus-{scale}x"
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            make_corpus(scale, corpus, source)
        for mode, workers in [("sequential", 1)] + [("dask", w) for w in args.workers]:
            cmd = [sys.executable, __file__, "--folder", str(folder), "--one", mode, str(scale),
                   str(workers)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            if out.returncode:
                sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"{scale:>4}x {mode:>10} w={workers}  rows {r['rows']:>9,}  "
                  f"{r['seconds']:8.1f} s  {r['rows'] / r['seconds']:9,.0f} rows/s  "
                  f"peak {r['peak_mb']:5} MB (+{r['peak_over_base_mb']} MB)  "
                  f"{r['stage_seconds']}", flush=True)  # fmt: skip
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version()}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
