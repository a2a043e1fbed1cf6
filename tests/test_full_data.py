"""Full-data preprocessing through the mirror: the notebook's figures, exactly."""

import numpy as np
import pyarrow.parquet as pq

from flows.config import load_config
from tasks.data import ingest_csv
from tasks.text import tokenize_tweets
from tasks.vocab import build_vocab, drop_rare_tokens, read_vocab
from tasks.windows import read_distances, read_pairs, window_pairs


def test_full_train_csv_matches_the_notebook(data_dir):
    cfg = load_config("word2vec", "parity")
    rows = ingest_csv.fn("word2vec", "tweets_hate_speech", "train.csv")
    assert rows.stats["rows"] == 31962 and rows.stats["decode_errors"] == 2
    tokens = tokenize_tweets.fn("word2vec", rows, cfg.tokenize)
    vocab = build_vocab.fn("word2vec", tokens, cfg.vocab.min_count)
    id2tok, counts = read_vocab(vocab)
    assert len(id2tok) == 3085
    assert id2tok.index("father") == 1 and id2tok[0] == "@user"
    assert counts.min() == 11  # "more than 10 times"
    encoded = drop_rare_tokens.fn("word2vec", tokens, vocab)
    assert pq.read_table(encoded.file("ids.parquet")).num_rows == 31962
    pairs = window_pairs.fn("word2vec", encoded, cfg.windows.size, cfg.windows.shard_rows)
    data = read_pairs(pairs)
    # 13 full batches of 65,536 and a 14th partial one in the notebook's DataLoader
    assert len(data) == 854244 == pairs.stats["pairs"]
    assert pairs.stats["shards"] == 4 and data.dtype == np.int32
    assert data.min() >= 0 and data.max() < 3085
    schema = pq.read_schema(pairs.file("pairs-00000.parquet"))
    assert [str(t) for t in schema.types] == ["int32", "int32", "int8"]
    assert schema.names == ["center", "context", "distance"]
    distance = read_distances(pairs)
    assert len(distance) == len(data) and set(np.unique(distance)) == {1, 2, 3}
