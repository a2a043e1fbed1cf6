from tasks.text import stopword_set, tweet_tokenizer

NOTEBOOK = dict(drop_pattern=r"[^a-z@# ]", stopwords="english", stemmer="snowball")


def test_first_tweet_of_the_dataset():
    tokenize = tweet_tokenizer(**NOTEBOOK)
    text = (
        "@user when a father is dysfunctional and is so selfish he drags his kids into his "
        "dysfunction.   #run"
    )
    assert tokenize(text) == [
        "@user",
        "father",
        "dysfunct",
        "selfish",
        "drag",
        "kid",
        "dysfunct",
        "#run",
    ]


def test_symbols_are_removed_not_turned_into_spaces():
    tokenize = tweet_tokenizer(**NOTEBOOK)
    # "can't" -> "cant", "pdx." -> "pdx"; digits and emoji vanish; runs of spaces split once
    assert tokenize("@user thanks for #lyft credit i can't use   pdx. 2016 \U0001f600") == [
        "@user",
        "thank",
        "#lyft",
        "credit",
        "cant",
        "use",
        "pdx",
    ]


def test_stopwords_are_matched_before_stemming():
    tokenize = tweet_tokenizer(**NOTEBOOK)
    # "doing" is a stopword; "does" too; "having" too. "dogs" is not.
    assert tokenize("Doing does having dogs") == ["dog"]


def test_empty_and_symbol_only_text_give_no_tokens():
    tokenize = tweet_tokenizer(**NOTEBOOK)
    assert tokenize("") == []
    assert tokenize("  !!! 123 \ufffd  ") == []


def test_parameters_change_the_output():
    raw = tweet_tokenizer(drop_pattern=r"[^a-z@# ]", stopwords=None, stemmer="none")
    assert raw("The kids are running") == ["the", "kids", "are", "running"]


def test_nltk_english_stopwords_has_179_words():
    words = stopword_set("english")
    assert len(words) == 179 and "the" in words and "father" not in words
