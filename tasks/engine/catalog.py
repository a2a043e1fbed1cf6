"""Every dataset seqflow reads, declared once: where it comes from, its checksum, its columns.

The `folder` is also the dataset's path inside a mirror (a local folder laid out like
`shared/datasets/`), so `SEQFLOW_MIRROR=/path/to/datasets` can stand in for the network.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceFile:
    name: str  # path inside the dataset folder (and inside the mirror)
    url: str  # canonical download address
    sha256: str  # expected content hash


@dataclass(frozen=True)
class DatasetSpec:
    folder: str
    files: tuple[SourceFile, ...]
    columns: tuple[str, ...] = ()

    def file(self, name: str) -> SourceFile:
        if found := [f for f in self.files if f.name == name]:
            return found[0]
        known = ", ".join(f.name for f in self.files)
        raise KeyError(f"dataset {self.folder!r} has no file {name!r} (known: {known})")


_TWEETS_REPO = "https://raw.githubusercontent.com/sharmaroshan/Twitter-Sentiment-Analysis/master"
_MULTI30K = "https://raw.githubusercontent.com/neychev/small_DL_repo/master/datasets/Multi30k"

TWEETS = DatasetSpec(
    folder="tweets_hate_speech",
    # the notebook's Hub dataset tweets_hate_speech_detection reads these two CSV files
    columns=("id", "label", "tweet"),
    files=(
        SourceFile(
            "train.csv",
            f"{_TWEETS_REPO}/train_tweet.csv",
            "d0d4a273f29f556324bb0a434f39e34bd7b9da3cd69244c4b09bb18a78d372d7",
        ),
        SourceFile(
            "test.csv",
            f"{_TWEETS_REPO}/test_tweets.csv",
            "436c379693490aa42e4f88aa187c4bea987d62e8e45672cc35104dba37a1c586",
        ),
    ),
)

MULTI30K = DatasetSpec(
    folder="multi30k",
    files=(
        SourceFile(
            "training.tar.gz",
            f"{_MULTI30K}/training.tar.gz",
            "20140d013d05dd9a72dfde46478663ba05737ce983f478f960c1123c6671be5e",
        ),
        SourceFile(
            "validation.tar.gz",
            f"{_MULTI30K}/validation.tar.gz",
            "a7aa20e9ebd5ba5adce7909498b94410996040857154dab029851af3a866da8c",
        ),
        SourceFile(
            "mmt16_task1_test.tar.gz",
            f"{_MULTI30K}/mmt16_task1_test.tar.gz",
            "6d1ca1dba99e2c5dd54cae1226ff11c2551e6ce63527ebb072a1f70f72a5cd36",
        ),
    ),
)

QUIJOTE = DatasetSpec(
    folder="quijote",
    files=(
        SourceFile(
            "2000-0.txt",
            "https://www.gutenberg.org/files/2000/2000-0.txt",
            "485be638d952a55acbb944c964d0429418ca2da711df7bc48a36c612129ead9b",
        ),
    ),
)

AIRLINE = DatasetSpec(
    folder="airline_passengers",
    columns=("Month", "Passengers"),
    files=(
        SourceFile(
            "airline-passengers.csv",
            "https://raw.githubusercontent.com/jbrownlee/Datasets/master/airline-passengers.csv",
            "8cb51be753a718d9be5d76d7e238cc224792754676adc21faa59e954b0201621",
        ),
    ),
)

NLTK_STOPWORDS = DatasetSpec(
    folder="nltk_data",
    files=(
        SourceFile(
            "corpora/stopwords.zip",
            "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/stopwords.zip",
            "15c94179887425ca1bedc265608cab9f27d650211f709bb929e320990a4b01d1",
        ),
    ),
)

DATASETS = {d.folder: d for d in (TWEETS, MULTI30K, QUIJOTE, AIRLINE, NLTK_STOPWORDS)}
