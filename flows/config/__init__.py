"""Typed pipeline configs. Defaults reproduce the notebook (the `parity` profile); the other
profiles override a few fields. The same pydantic model is the Prefect flow's parameter schema.

The machinery is flows/config/base.py; each pipeline's sections, config class and profiles are
flows/config/<pipeline>.py. Everything is importable from `flows.config`, as before the split.
"""

from flows.config import airline, charlm, fundamentals, seq2seq, word2vec
from flows.config.airline import AirlineConfig, AirlineTrain, SeriesData, SeriesWindows
from flows.config.base import (
    CONFIGS,
    PROFILES,
    ConfigError,
    Section,
    TrainConfig,
    _merge,
    describe,
    flatten,
    load_config,
    parse_override,
    register,
)
from flows.config.charlm import BookData, CharEval, CharLMConfig, CharLMTrain, CharWindows
from flows.config.fundamentals import FundamentalsConfig, FundamentalsTrain, ToyData
from flows.config.seq2seq import (
    ParallelData,
    ParallelTokenize,
    ParallelVocab,
    Seq2SeqConfig,
    Seq2SeqTrain,
    TranslateEval,
)
from flows.config.word2vec import (
    DataSection,
    EvalSection,
    TokenizeSection,
    VocabSection,
    WindowSection,
    Word2VecConfig,
    Word2VecTrain,
)

# the order `load_config` lists the pipelines in (an unknown pipeline's error message)
register("fundamentals", FundamentalsConfig, fundamentals.PROFILES)
register("word2vec", Word2VecConfig, word2vec.PROFILES)
register("seq2seq", Seq2SeqConfig, seq2seq.PROFILES)
register("charlm", CharLMConfig, charlm.PROFILES)
register("airline", AirlineConfig, airline.PROFILES)

__all__ = [
    "CONFIGS",
    "PROFILES",
    "AirlineConfig",
    "AirlineTrain",
    "BookData",
    "CharEval",
    "CharLMConfig",
    "CharLMTrain",
    "CharWindows",
    "ConfigError",
    "DataSection",
    "EvalSection",
    "FundamentalsConfig",
    "FundamentalsTrain",
    "ParallelData",
    "ParallelTokenize",
    "ParallelVocab",
    "Section",
    "Seq2SeqConfig",
    "Seq2SeqTrain",
    "SeriesData",
    "SeriesWindows",
    "TokenizeSection",
    "ToyData",
    "TrainConfig",
    "TranslateEval",
    "VocabSection",
    "WindowSection",
    "Word2VecConfig",
    "Word2VecTrain",
    "_merge",
    "describe",
    "flatten",
    "load_config",
    "parse_override",
    "register",
]
