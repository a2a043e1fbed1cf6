"""The "a^n b^n EOS" toy data of Laboratorio 3 (pure functions, and the stage writing it).

Matches the notebook: with ``np.random.seed(2023)`` immediately before ``generate_data()``
(or ``rng=np.random.RandomState(2023)``) the 100 sequences, the vocabulary
{'a': 0, 'b': 1, 'EOS': 2, 'UNK': 3}, the 80/10/10 split and the one-hot shapes are the
notebook's. One difference: the vocabulary is a dict whose misses return the UNK index
without inserting the word (the notebook's ``defaultdict`` grows on every miss and holds
a lambda, so it cannot be pickled).
"""

import json
from collections import Counter
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.stage import run_stage, write_table

SEED = 2023
UNK = "UNK"
EOS = "EOS"
SPLITS = ("train", "val", "test")


class Vocab(dict):
    """A dict that answers ``default`` for missing keys and leaves itself unchanged."""

    def __init__(self, items=(), default=None):
        super().__init__(items)
        self.default = default

    def __missing__(self, key):
        return self.default


def generate_data(num_seq=100, rng=None):
    """``num_seq`` sequences ['a']*n + ['b']*n + ['EOS'], n = randint(1, 12).

    ``rng`` is a ``np.random.RandomState``; None draws from the global ``np.random``
    stream as the notebook does (it calls ``np.random.seed(2023)`` just before).
    """
    draw = np.random if rng is None else rng
    lengths = [draw.randint(1, 12) for _ in range(num_seq)]
    return [["a"] * n + ["b"] * n + [EOS] for n in lengths]


def seqs_to_dicts(sequences):
    """Vocabulary by descending frequency (ties keep first-seen order) plus UNK.

    Returns word_to_idx, idx_to_word, num_sentences, vocab_size, as the notebook.
    """
    counts = Counter(word for sequence in sequences for word in sequence)
    words = [w for w, _ in counts.most_common()] + [UNK]
    return *vocabs(words), len(sequences), len(words)


def vocabs(words: list[str]) -> tuple[Vocab, Vocab]:
    """(word_to_idx, idx_to_word) of a word list ending in UNK, misses answering UNK."""
    word_to_idx = Vocab(((w, i) for i, w in enumerate(words)), default=len(words) - 1)
    return word_to_idx, Vocab(enumerate(words), default=UNK)


def create_datasets(sequences, p_train=0.8, p_val=0.1, p_test=0.1):
    """Train / validation / test in sequence order, each a list of (inputs, targets) whose
    targets are the inputs shifted by one.

    As the notebook: train = first int(N*p_train), validation the next int(N*p_val),
    test the last int(N*p_test) (so the parts may overlap if the fractions exceed 1;
    the test part is empty, not the whole list, when int(N*p_test) is 0).
    """
    n = len(sequences)
    num_train, num_val, num_test = int(n * p_train), int(n * p_val), int(n * p_test)
    parts = (
        sequences[:num_train],
        sequences[num_train : num_train + num_val],
        sequences[-num_test:] if num_test else [],
    )
    return tuple([(s[:-1], s[1:]) for s in part] for part in parts)


def one_hot_encode_sequence(sequence, vocab_size, word_to_idx):
    """Array (len(sequence), vocab_size, 1): one column vector per word."""
    return np.eye(vocab_size)[[word_to_idx[w] for w in sequence]][..., None]


def encode_pairs(dataset, vocab_size, word_to_idx):
    """One-hot (inputs, targets) arrays for every item of ``dataset``, in order."""
    encode = partial(one_hot_encode_sequence, vocab_size=vocab_size, word_to_idx=word_to_idx)
    return [(encode(x), encode(y)) for x, y in dataset]


# --- the data stage --------------------------------------------------------------------------


@task(name="sequences", cache_policy=NO_CACHE)
def make_sequences(pipeline: str, cfg, seed: int):
    """The notebook's toy data -> sequences.parquet (split, inputs, targets) + vocab.json."""

    def build(out):
        sequences = generate_data(cfg.num_seq, np.random.RandomState(seed))
        idx_to_word = seqs_to_dicts(sequences)[1]
        parts = create_datasets(sequences, cfg.p_train, cfg.p_val, cfg.p_test)
        rows = {
            "split": [name for name, part in zip(SPLITS, parts, strict=True) for _ in part],
            "inputs": [x for part in parts for x, _ in part],
            "targets": [y for part in parts for _, y in part],
        }
        write_table(pa.table(rows), out / "sequences.parquet")
        (out / "vocab.json").write_text(json.dumps(list(idx_to_word.values())))
        counts = dict(zip(SPLITS, map(len, parts), strict=True))
        return {"sequences": cfg.num_seq, "vocab_size": len(idx_to_word), **counts}

    return run_stage(pipeline, "sequences", inputs={}, params={**cfg.model_dump(), "seed": seed},
                     libs=("numpy", "pyarrow"),
                     build=build)  # fmt: skip


def read_sequences(stage) -> tuple[dict, dict, dict]:
    """(split -> list of (inputs, targets) token lists, word_to_idx, idx_to_word)."""
    word_to_idx, idx_to_word = vocabs(json.loads(stage.file("vocab.json").read_text()))
    t = pq.read_table(stage.file("sequences.parquet")).to_pydict()
    rows = list(zip(t["split"], t["inputs"], t["targets"], strict=True))
    parts = {split: [(x, y) for s, x, y in rows if s == split] for split in SPLITS}
    return parts, word_to_idx, idx_to_word
