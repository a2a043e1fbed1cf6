import numpy as np

from tasks.vocab import count_tokens, encode_docs, frequent_tokens


def test_vocab_keeps_first_occurrence_order_not_frequency_order():
    docs = [["b", "a"], ["a", "c", "a"], ["c", "b", "c", "d"]]
    counts = count_tokens(docs)
    assert list(counts) == ["b", "a", "c", "d"]
    assert frequent_tokens(counts, min_count=2) == ["b", "a", "c"]
    assert frequent_tokens(counts, min_count=3) == ["a", "c"]


def test_threshold_is_inclusive_at_min_count():
    counts = count_tokens([["x"] * 10, ["y"] * 11])
    assert frequent_tokens(counts, 11) == ["y"]  # the notebook's "v > 10"


def test_encode_drops_rare_tokens_and_keeps_rows():
    ids, offsets = encode_docs([["a", "zz", "b"], ["zz"], [], ["b"]], {"a": 0, "b": 1})
    assert ids.tolist() == [0, 1, 1]
    assert offsets.tolist() == [0, 2, 2, 2, 3]
    assert ids.dtype == np.int32
