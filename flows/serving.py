"""What the raw-input pyfuncs share (flows/embedder.py, writer.py, forecasting.py): reading a
request's column, checking its values and params, and refusing bad ones with MLflow's
INVALID_PARAMETER_VALUE, which the scoring server answers with a 400 and the message.
Inputs are counted from 1, as the translator does (flows/translator.py). Their signatures type
the input columns Any, so a value reaches predict() as sent in every payload form
(`dataframe_records`, `dataframe_split`, `inputs`, `instances`): with type string, MLflow
makes "42" and "None" of 42 and null in `inputs`/`instances` before the model sees them.
`unfolded()` undoes the one thing Any columns cost."""

from contextlib import contextmanager

import numpy as np


class BadInput(ValueError):
    """A request the model cannot answer; the message names the input and the fix."""


@contextmanager
def refusing_bad_input():
    """BadInput inside -> MlflowException(INVALID_PARAMETER_VALUE): a 400, not a 500."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    try:
        yield
    except BadInput as err:
        raise MlflowException(str(err), INVALID_PARAMETER_VALUE) from err


def unfolded(frame):
    """The rows of a request MLflow folded into one. With Any columns, a dict payload whose
    values are all lists of strings (`inputs`/`instances` as columns or as bare values, e.g.
    {"inputs": ["a", "b"]}) becomes ONE row holding those lists (mlflow/models/utils.py,
    _enforce_schema); such a row is read as the columns it was. (A `dataframe_records` row whose
    every cell is a list of strings reads the same way.)"""
    import pandas as pd

    if not hasattr(frame, "columns") or len(frame) != 1 or len(frame.columns) == 0:
        return frame
    cells = list(frame.iloc[0])
    if not all(isinstance(c, list) and all(isinstance(v, str) for v in c) for c in cells):
        return frame
    if len({len(c) for c in cells}) != 1:
        return frame  # columns of different lengths: refused as lists, naming input 1
    return pd.DataFrame({name: list(c) for name, c in zip(frame.columns, cells, strict=True)})


def column(model_input, name: str, required: bool = True) -> list | None:
    """The values of column `name`: a DataFrame's column, or a list / Series / single value
    taken as that column. None when an optional column is absent."""
    model_input = unfolded(model_input)
    if hasattr(model_input, "columns"):
        if name not in model_input.columns:
            if not required:
                return None
            raise BadInput(f"the request has no column {name!r}: send records like "
                           f'{{"{name}": ...}}')  # fmt: skip
        model_input = model_input[name]
    elif isinstance(model_input, str | int | float | dict):
        model_input = [model_input]
    values = model_input.tolist() if hasattr(model_input, "tolist") else list(model_input)
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def missing(value) -> bool:
    """None, or the NaN pandas puts where a request left a value out."""
    import pandas as pd

    return value is None or (isinstance(value, float) and bool(pd.isna(value)))


def what(value) -> str:
    return "null" if missing(value) else type(value).__name__


def texts(values: list, name: str) -> list[str]:
    """The values, each a string with something besides spaces."""
    for i, v in enumerate(values, 1):
        if not isinstance(v, str):
            raise BadInput(f"input {i}: {name} is {what(v)}, not text; send a string")
        if not v.strip():
            raise BadInput(f"input {i}: {name} is empty; send some text")
    return values


def number(params: dict | None, name: str, default, low, high, whole: bool = False):
    """Param `name` (else `default`), checked to lie in [low, high]."""
    value = (params or {}).get(name, default)
    if missing(value) or isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"param {name} is {what(value)}; send a number from {low} to {high}")
    if not low <= value <= high or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise BadInput(f"param {name}={value} is out of range; send {kind} from {low} to {high}")
    return int(value) if whole else float(value)


def log_pyfunc(run_id: str, name: str, entry, model, jsons: dict, signature, example,
               requirements: list[str], files: dict | None = None) -> dict:  # fmt: skip
    """Log a raw-input pyfunc (models-from-code `entry`) to run `run_id` and register a new
    version of model `name`: the weights, each of `jsons` (artifact name -> JSON value) and
    each of `files` (artifact name -> a file's path) travel as its artifacts. Returns
    tracking.registered's {version, uri}."""
    import json
    import tempfile
    from pathlib import Path

    import mlflow

    from tasks.engine import tracking
    from tasks.runtime import checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        files = {"weights": Path(tmp) / "weights.pt"} | dict(files or {})
        checkpoint.write(files["weights"], model.cpu().state_dict())
        for key, value in jsons.items():
            files[key] = Path(tmp) / f"{key}.json"
            files[key].write_text(json.dumps(value, ensure_ascii=False))
        tracking.client()
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(entry),
                artifacts={k: str(v) for k, v in files.items()},
                signature=signature,
                input_example=example,
                pip_requirements=[*tracking.REQUIREMENTS, *requirements],
                registered_model_name=name,
            )
    return tracking.registered(run_id, name, info.registered_model_version, info.model_uri)
