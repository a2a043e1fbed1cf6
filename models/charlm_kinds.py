"""The character-LM model kinds, importable without torch (the config schema uses them)."""

KINDS = (
    "rnn_scratch",
    "lstm_scratch",
    "gru_scratch",
    "rnn",
    "lstm",
    "gru",
    "lstm_deep",
    "lstm_bidir",
)
