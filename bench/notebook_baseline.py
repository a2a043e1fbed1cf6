"""Re-implementation of the course notebook's Word2Vec baseline paths (cells In[10]-In[25]).

Kept deliberately as slow as the notebook (list membership tests, no stemmer cache, one
optimizer step per pair) so benchmarks can time the baseline on the same machine.
Run with HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1 and NLTK_DATA pointing at the stopwords.
"""

import re
import sys
import tempfile
import time
from collections import Counter

import datasets
import numpy as np
import torch
from nltk.corpus import stopwords
from nltk.stem.snowball import SnowballStemmer
from torch import nn

from models.word2vec import Word2Vec


def _load_csv(train_csv: str, cache_dir: str) -> datasets.Dataset:
    """Load the train split with the csv builder.

    The file holds 2 invalid UTF-8 sequences; the plain loader raises DatasetGenerationError
    (UnicodeDecodeError), so `encoding_errors="replace"` is forwarded to pandas.
    """
    files = {"train": train_csv}
    return datasets.load_dataset(
        "csv", data_files=files, cache_dir=cache_dir, encoding_errors="replace"
    )["train"]


def notebook_preprocess(train_csv: str, cache_dir: str) -> dict:
    """The notebook's `datasets` path: tokenize, drop rare tokens, windowize, flatten pairs.

    Returns {"rows": n_rows, "vocab": vocab list, "pairs": int64 array [n_pairs, 2]}.
    """
    ss = SnowballStemmer("english")
    sw = stopwords.words("english")  # a list, as in the notebook

    def split_tokens(row: dict) -> dict:
        tweet_cleaned = re.sub(r"[^a-z@# ]", "", row["tweet"].lower())
        tweet_tokens = re.split(r" +", tweet_cleaned)
        row["all_tokens"] = [ss.stem(i) for i in tweet_tokens if (i not in sw) and len(i)]
        return row

    dataset = _load_csv(train_csv, cache_dir)
    dataset = dataset.map(split_tokens, load_from_cache_file=False)

    counts = Counter([i for s in dataset["all_tokens"] for i in s])
    counts = {k: v for k, v in counts.items() if v > 10}
    vocab = list(counts.keys())
    tok2id = {tok: idx for idx, tok in enumerate(vocab)}

    def remove_rare_tokens(row: dict) -> dict:
        row["tokens"] = [t for t in row["all_tokens"] if t in vocab]  # list membership
        return row

    def windowizer(row: dict, wsize: int = 3) -> dict:
        doc = row["tokens"]
        out = []
        for i, word in enumerate(doc):
            target = tok2id[word]
            window = [i + j for j in range(-wsize, wsize + 1) if 0 <= i + j < len(doc) and j != 0]
            out += [(target, tok2id[doc[w]]) for w in window]
        row["moving_window"] = out
        return row

    dataset = dataset.map(remove_rare_tokens, load_from_cache_file=False)
    dataset = dataset.map(windowizer, load_from_cache_file=False)

    data = [i for s in dataset["moving_window"] for i in s]  # as Word2VecDataset
    pairs = np.array(data, dtype=np.int64).reshape(-1, 2)
    return {"rows": dataset.num_rows, "vocab": vocab, "pairs": pairs}


def notebook_train_pairs_per_sec(
    pairs: np.ndarray, vocab_size: int, n_pairs: int = 20000, seed: int = 0
) -> float:
    """Time the notebook's per-pair training loop (In[25]) on CPU; return pairs per second.

    `pairs` is [n, 2] (center, context); the first `n_pairs` of a shuffled copy are used.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    sample = torch.from_numpy(pairs[rng.permutation(len(pairs))[:n_pairs]].astype(np.int64))

    model = Word2Vec(vocab_size, 50)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)

    losses = []
    start = time.perf_counter()
    for i in range(len(sample)):
        center = sample[i][0]
        context = sample[i][1]
        optimizer.zero_grad()
        logits = model(context).unsqueeze(0)
        loss = loss_fn(logits, center.unsqueeze(0))
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    return len(sample) / elapsed


if __name__ == "__main__":
    csv_path = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = notebook_preprocess(csv_path, tmp)
        prep_s = time.perf_counter() - t0
    vocab_list = result["vocab"]
    print(f"rows: {result['rows']}")
    print(f"vocab size: {len(vocab_list)}")
    print(f"vocab[1]: {vocab_list[1]}")
    print(f"pairs: {len(result['pairs'])}")
    print(f"preprocess seconds: {prep_s:.1f}")
    rate = notebook_train_pairs_per_sec(result["pairs"], len(vocab_list), n_pairs=20000)
    print(f"train pairs/s (20000 pairs): {rate:.0f}")
