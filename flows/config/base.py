"""The config machinery every pipeline shares: the section base classes, `--set` overrides,
profiles, validation (`load_config`) and the flat params logged to MLflow (`flatten`).

Each pipeline's sections, config class and profiles live in flows/config/<pipeline>.py;
flows/config/__init__.py registers them here (`register`), in the order `load_config` lists them.
"""

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainConfig(Section):
    """Fields every pipeline's training section has."""

    epochs: int = Field(3, ge=1)
    max_steps_per_epoch: int | None = Field(None, ge=1, description="unset = the whole epoch")
    seed: int = 2023
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    warm_start: bool = Field(
        False, description="start from the champion model's weights for tokens it knows"
    )
    nproc: int = Field(1, ge=1, description="DDP processes (word2vec, seq2seq, charlm)")
    launcher: Literal["spawn", "torchrun"] = Field(
        "spawn", description="how DDP ranks start: torch.multiprocessing spawn, or torchrun"
    )
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    resume: bool = Field(True, description="continue from the newest checkpoint of this setup")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16 = autocast to bfloat16 where the device supports it"
    )


class SourceSection(Section):
    """Where a pipeline's data comes from: the course's dataset, or your own (tasks/sources.py)."""

    source: str = Field(
        "course",
        description="course = the notebook's dataset; else a Hub id, a local dataset folder, "
        "or files (a path or glob: csv, tsv, json, jsonl, parquet, txt)",
    )
    config: str | None = Field(None, description="a Hub/folder dataset's configuration name")
    revision: str | None = Field(None, description="Hub: branch, tag or commit")
    train_split: str = "train"
    validation_split: str | None = Field("validation", description="carved when missing")
    test_split: str | None = Field("test", description="carved when missing")
    validation_fraction: float = Field(0.1, gt=0, lt=0.5, description="carved share of train")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="carved share of train")
    split_seed: int = 2023
    streaming: bool = Field(False, description="read the source as a stream, in shards")

    @property
    def own(self) -> bool:
        """True when the data is the user's, not the course's."""
        return self.source != "course"


# pipeline -> its config class, and pipeline -> {profile: overrides of the defaults}; filled by
# `register` (flows/config/__init__.py)
CONFIGS: dict[str, type[BaseModel]] = {}
PROFILES: dict[str, dict[str, dict]] = {}


def register(pipeline: str, config: type[BaseModel], profiles: dict[str, dict]) -> None:
    """Make `pipeline` loadable: its config class and its profiles."""
    CONFIGS[pipeline] = config
    PROFILES[pipeline] = profiles


class ConfigError(ValueError):
    pass


def parse_override(item: str) -> tuple[list[str], object]:
    """`train.epochs=5` -> (['train', 'epochs'], 5); values are JSON where they parse as JSON."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=5")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip().split("."), value


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def check_key(model: type[BaseModel], path: list[str], item: str) -> None:
    """An unknown `--set` key is named whole, with the fields known where it went wrong."""
    cls, key = model, ".".join(path)
    for depth, part in enumerate(path):
        fields = getattr(cls, "model_fields", None)
        if fields is None:  # a plain value (dict-valued fields take any key)
            return
        if part not in fields:
            where = ".".join(path[:depth]) or "the config"
            raise ConfigError(f"--set {item}: unknown key {key!r} ({where} has no field "
                              f"{part!r}; known: {', '.join(fields)})")  # fmt: skip
        cls = fields[part].annotation
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return


def load_config(pipeline: str, profile: str = "parity", overrides: list[str] = ()) -> BaseModel:
    """Build and validate a pipeline config before any work starts."""
    if pipeline not in CONFIGS:
        raise ConfigError(f"unknown pipeline {pipeline!r}; known: {', '.join(CONFIGS)}")
    profiles = PROFILES[pipeline]
    if profile not in profiles:
        raise ConfigError(
            f"unknown profile {profile!r} for {pipeline}; known: {', '.join(profiles)}"
        )
    values = _merge({"profile": profile}, profiles[profile])
    for item in overrides:
        path, value = parse_override(item)
        check_key(CONFIGS[pipeline], path, item)
        nested: dict = value  # type: ignore[assignment]
        for part in reversed(path):
            nested = {part: nested}
        values = _merge(values, nested)
    try:
        return CONFIGS[pipeline].model_validate(values)
    except ValidationError as err:
        raise ConfigError(f"invalid config for {pipeline} ({profile}): {one_line(err)}") from None


def one_line(err: ValidationError) -> str:
    """`train.epochs = 0: Input should be greater than or equal to 1`, errors joined by '; '."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "the config"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" = {json.dumps(got, default=str)}"
        parts.append(f"{key}{shown}: {e['msg']}")
    return "; ".join(parts)


def describe(config: BaseModel) -> list[str]:
    """`key = value  # description` for every field of a config, nested sections flattened."""
    out: list[str] = []

    def walk(prefix: str, model: BaseModel) -> None:
        for name, field in type(model).model_fields.items():
            value, key = getattr(model, name), f"{prefix}{name}"
            if isinstance(value, BaseModel):
                walk(f"{key}.", value)
                continue
            shown = json.dumps(value, default=str, ensure_ascii=False)
            note = field.description or ""
            out.append(f"{key} = {shown}" + (f"  # {note}" if note else ""))

    walk("", config)
    return out


def flatten(config: BaseModel) -> dict[str, object]:
    """`{'train.epochs': 3, ...}`: the params logged to MLflow."""
    out: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = value

    walk("", config.model_dump())
    return out
