import pytest

from flows.config import ConfigError, flatten, load_config


def test_parity_defaults_are_the_notebook():
    cfg = load_config("word2vec", "parity")
    assert cfg.tokenize.drop_pattern == r"[^a-z@# ]" and cfg.tokenize.stemmer == "snowball"
    assert cfg.vocab.min_count == 11 and cfg.windows.size == 3
    assert cfg.train.embed_size == 50 and cfg.train.epochs == 3 and cfg.train.model == "softmax"
    assert cfg.train.max_steps_per_epoch is None


def test_overrides_are_typed_and_validated():
    cfg = load_config(
        "word2vec",
        "quick",
        ["train.epochs=5", "tokenize.stemmer=none", "train.max_steps_per_epoch=2"],
    )
    assert cfg.train.epochs == 5 and cfg.tokenize.stemmer == "none"
    assert cfg.train.max_steps_per_epoch == 2
    assert cfg.data.limit_rows == 3000  # the profile's value survives


@pytest.mark.parametrize(
    "bad",
    [
        "train.epochs=0",
        "train.epochs=three",
        "train.lr=-1",
        "tokenize.stemmer=porter",
        "train.nope=1",
        "epochs",
    ],
)
def test_bad_values_are_rejected_before_work_starts(bad):
    with pytest.raises(ConfigError):
        load_config("word2vec", "parity", [bad])


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ConfigError, match="parity, quick, best"):
        load_config("word2vec", "fast")


def test_flatten_gives_dotted_params():
    flat = flatten(load_config("word2vec", "best"))
    assert flat["train.model"] == "sgns" and flat["profile"] == "best"
    assert flat["evaluate.words"] == ["good", "bad", "school", "day"]
