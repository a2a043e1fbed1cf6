"""A tuning study's search space: ranges over a pipeline's config keys, checked before any trial.

The default space is TUNE_SPACE in flows/config/<pipeline>.py; a YAML or JSON file replaces it:

    train.lr: {low: 1e-4, high: 1e-2, log: true}   # a float range (log scale)
    train.hidden: [128, 256, 512]                  # a choice
    train.n_layers: {low: 1, high: 3}              # an int range (step 1, or `step`)
"""

import importlib
import json
from pathlib import Path

from flows.config import ConfigError, load_config

RANGE_KEYS = {"low", "high", "log", "step"}


class SpaceError(ConfigError):
    """A search space that cannot be sampled; the message names the key and the fix."""


def default_space(pipeline: str, config=None) -> dict:
    """flows/config/<pipeline>.py's TUNE_SPACE, or its tune_space(config) when the space
    depends on the config (fundamentals: the learning rate of the kind trained)."""
    module = importlib.import_module(f"flows.config.{pipeline}")
    if config is not None and hasattr(module, "tune_space"):
        return module.tune_space(config)
    space = getattr(module, "TUNE_SPACE", None)
    if space is None:
        raise SpaceError(f"{pipeline} has no default search space: give one with --space FILE")
    return space


def read_space(path: str | Path) -> dict:
    """A space file (YAML or JSON, by content) as a mapping."""
    import yaml

    path = Path(path)
    try:
        found = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SpaceError(f"--space {path}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise SpaceError(f"--space {path}: not YAML or JSON ({err})") from None
    if not isinstance(found, dict) or not found:
        raise SpaceError(f"--space {path}: expected a mapping of config keys to ranges or "
                         "choices, e.g. `train.lr: {low: 1e-4, high: 1e-2}`")  # fmt: skip
    return found


def _check_value(pipeline: str, profile: str, overrides: list[str], key: str, value,
                 where: str) -> None:  # fmt: skip
    """`key` = `value` must make a valid config (the key known, the value in its bounds)."""
    try:
        load_config(pipeline, profile, [*overrides, f"{key}={json.dumps(value)}"])
    except ConfigError as err:
        raise SpaceError(f"{where}: {key} = {value!r}: {err}") from None


def distributions(pipeline: str, profile: str, overrides: list[str], space: dict,
                  where: str = "the search space") -> dict:  # fmt: skip
    """{key: optuna distribution} for `space`, every key and bound checked against the config;
    a SpaceError (naming `where` and the key) before any trial otherwise."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            if not spec:
                raise SpaceError(f"{where}: {key}: an empty choice list; give at least one value")
            bad = [v for v in spec if not isinstance(v, str | int | float | bool) and v is not None]
            if bad:
                raise SpaceError(f"{where}: {key}: choices must be numbers, strings or booleans, "
                                 f"not {bad[0]!r}")  # fmt: skip
            for value in spec:
                _check_value(pipeline, profile, overrides, key, value, where)
            out[key] = CategoricalDistribution(spec)
            continue
        if not isinstance(spec, dict) or not {"low", "high"} <= set(spec):
            raise SpaceError(f"{where}: {key}: expected {{low, high}} (with log or step) or a "
                             f"list of choices, got {spec!r}")  # fmt: skip
        if unknown := set(spec) - RANGE_KEYS:
            raise SpaceError(f"{where}: {key}: unknown range field(s) {sorted(unknown)}; "
                             f"known: {sorted(RANGE_KEYS)}")  # fmt: skip
        low, high, log, step = spec["low"], spec["high"], bool(spec.get("log")), spec.get("step")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise SpaceError(f"{where}: {key}: low and high must be numbers")
        if low >= high:
            raise SpaceError(f"{where}: {key}: low {low} must be below high {high}")
        if log and low <= 0:
            raise SpaceError(f"{where}: {key}: a log range needs low > 0 (got {low})")
        if log and step is not None:
            raise SpaceError(f"{where}: {key}: give log or step, not both")
        for value in (low, high):
            _check_value(pipeline, profile, overrides, key, value, where)
        if isinstance(low, int) and isinstance(high, int) and not isinstance(step, float):
            out[key] = IntDistribution(low, high, log=log, step=step or 1)
        else:
            out[key] = FloatDistribution(float(low), float(high), log=log, step=step)
    if not out:
        raise SpaceError(f"{where}: no key to search")
    return out
