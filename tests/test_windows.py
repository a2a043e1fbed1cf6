import numpy as np
import pytest

from tasks.windows import sliding_window_pairs


def reference_pairs(docs, wsize, with_distance=False):
    """The notebook's windowizer, written out plainly."""
    out = []
    for doc in docs:
        for i, word in enumerate(doc):
            for j in range(-wsize, wsize + 1):
                if j != 0 and 0 <= i + j < len(doc):
                    out.append((word, doc[i + j], abs(j)) if with_distance else (word, doc[i + j]))
    return out


def flat(docs):
    ids = np.array([t for d in docs for t in d], dtype=np.int32)
    offsets = np.cumsum([0] + [len(d) for d in docs])
    return ids, offsets


def test_notebook_example_every_good_dog():
    # "every good dog does fine", window 2
    every, good, dog, does, fine = range(5)
    pairs, _ = sliding_window_pairs(*flat([[every, good, dog, does, fine]]), wsize=2)
    assert [tuple(p) for p in pairs[:5].tolist()] == [
        (every, good),
        (every, dog),
        (good, every),
        (good, dog),
        (good, does),
    ]
    assert len(pairs) == 2 + 3 + 4 + 3 + 2


def test_edges_short_and_empty_documents():
    docs = [[], [7], [1, 2], [], [3, 4, 5]]
    pairs, _ = sliding_window_pairs(*flat(docs), wsize=3)
    assert [tuple(p) for p in pairs.tolist()] == [
        (1, 2),
        (2, 1),
        (3, 4),
        (3, 5),
        (4, 3),
        (4, 5),
        (5, 3),
        (5, 4),
    ]


def test_windows_never_cross_documents_and_match_reference():
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 50, rng.integers(0, 12)).tolist() for _ in range(300)]
    for wsize in (1, 3, 5):
        got, distance = sliding_window_pairs(*flat(docs), wsize=wsize)
        assert [tuple(p) for p in got.tolist()] == reference_pairs(docs, wsize)
        assert got.dtype == np.int32 and got.shape[1] == 2
        assert distance.dtype == np.int8
        rows = [(c, o, d) for (c, o), d in zip(got.tolist(), distance.tolist(), strict=True)]
        assert rows == reference_pairs(docs, wsize, with_distance=True)


def test_no_documents_gives_no_pairs():
    assert sliding_window_pairs(*flat([]), wsize=3)[0].shape == (0, 2)


def test_bad_window_size_is_rejected():
    with pytest.raises(ValueError, match="window size"):
        sliding_window_pairs(*flat([[1, 2]]), wsize=0)
