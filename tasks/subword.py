"""Subword units for translation (tokenize.subword = sentencepiece): one SentencePiece model
trained on the train split's raw text of both languages, cased unless tokenize.lowercase.

Every text encodes without <unk>: a character the model never saw falls back to its UTF-8
bytes (pieces <0x..>), which are in the vocabulary. Decoding the pieces gives the text back
(SentencePiece marks word starts with ▁), so translations need no detokenizer of their own.
"""

import functools
from pathlib import Path

import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.stage import StageOutput, run_stage

MODEL = "subword.model"
CONTROL = ("<unk>",)  # SentencePiece's own specials (unk only: no bos, eos, pad pieces)


class Subword:
    """A trained SentencePiece model: encode texts to pieces, decode pieces to text."""

    def __init__(self, proto: bytes):
        import sentencepiece as spm

        self.proto = proto
        self.sp = spm.SentencePieceProcessor(model_proto=proto)

    @classmethod
    def read(cls, path: str | Path) -> "Subword":
        return cls(Path(path).read_bytes())

    def pieces(self) -> list[str]:
        """Every piece of the model, its <unk> left out (the pipeline's vocabulary has one)."""
        return [p for i in range(self.sp.get_piece_size())
                if (p := self.sp.id_to_piece(i)) not in CONTROL]  # fmt: skip

    def encode(self, texts: list[str], lowercase: bool = False) -> list[list[str]]:
        texts = [t.lower() for t in texts] if lowercase else list(texts)
        return self.sp.encode(texts, out_type=str)

    def decode(self, pieces: list[str]) -> str:
        return self.sp.decode_pieces(pieces)


@functools.cache  # per process: a worker reads the model once
def load(path: str) -> Subword:
    return Subword.read(path)


@task(name="subword", cache_policy=NO_CACHE)
def train_subword(pipeline: str, rows: StageOutput, cfg) -> StageOutput:
    """The train split's source and target texts -> subword.model (SentencePiece, one joint
    vocabulary of tokenize.subword_vocab pieces at most, byte fallback, no normalisation)."""
    import sentencepiece as spm

    def build(out: Path) -> dict:
        table = pq.read_table(rows.file("train.parquet"))
        texts = [t for side in ("src", "trg") for t in table.column(side).to_pylist()
                 if t and t.strip()]  # fmt: skip
        if cfg.lowercase:
            texts = [t.lower() for t in texts]
        if not texts:
            raise ValueError(f"{rows.path}: the train split has no text to learn subwords from")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_prefix=str(out / "subword"),
            vocab_size=cfg.subword_vocab, model_type=cfg.subword_type,
            character_coverage=1.0, byte_fallback=True, hard_vocab_limit=False,
            normalization_rule_name="identity", unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
            num_threads=1, minloglevel=2,
        )  # fmt: skip
        (out / "subword.vocab").unlink(missing_ok=True)  # the pieces are in the model
        model = Subword.read(out / MODEL)
        return {"pieces": len(model.pieces()), "texts": len(texts)}

    return run_stage(
        pipeline,
        "subword",
        inputs={"rows": rows.fingerprint},
        params={
            "type": cfg.subword_type,
            "vocab": cfg.subword_vocab,
            "lowercase": cfg.lowercase,
        },  # fmt: skip
        libs=("sentencepiece",),
        build=build,
    )
