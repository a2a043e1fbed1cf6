"""The airline champion as an MLflow pyfunc: a horizon in, monthly passenger forecasts out.

Request, one row per forecast wanted:
- `horizon` (required): how many months to forecast, a whole number from 1 to 240;
- `history` (optional): the latest monthly passenger counts, oldest first. Without
  `last_month` they continue the series the model was trained on (the first is the month
  after its last); with it they are a series of their own, at least lookback + lag months
  long. Left out, null or []: forecast from the end of the training series;
- `last_month` (optional, "YYYY-MM"): the month of the last history value.
A model trained on a series of your own at another frequency (data.freq D, W, Q or Y) reads
and answers in its periods: `last_month` is a timestamp at that frequency (ISO date, YYYY-Qn,
YYYY) and `months` holds its periods' labels (settings carry `freq`, the series its `times`).
Forecasts are recursive: each month is predicted from the `lookback` months before it
(the transform the model was trained with, log / seasonal difference / scaling, and the
training series travel in the artifacts), then taken as known for the next.
Response, one row per input, in order: `months` (ISO "YYYY-MM", continuing the last month)
and `forecast` (passengers, one per month).
Refused with a 400 naming the input: a null, fractional or out-of-range horizon, a history
value that is not a positive number, a malformed last_month or one without history, a
history too short for the model's window.
"""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from mlflow.pyfunc import PythonModel
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.serving import BadInput, column, log_pyfunc, missing, refusing_bad_input, what
from tasks.runtime import checkpoint

ENTRY = Path(__file__).with_name("serve_airline.py")  # the models-from-code file
MAX_HORIZON = 240


def month_index(month: str) -> int | None:
    """A "YYYY-MM" month -> months since year 0; None when it is not such a month."""
    from tasks.series import MONTH

    found = MONTH.match(month.strip()) if isinstance(month, str) else None
    if not found or not 1 <= int(found[2]) <= 12:
        return None
    return int(found[1]) * 12 + int(found[2]) - 1


def month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


class Forecaster(PythonModel):
    def load_context(self, context) -> None:
        self.load(context.artifacts)

    def load(self, artifacts: dict) -> None:
        from models.forecaster import LSTMForecaster
        from tasks.series import Transform

        s = json.loads(Path(artifacts["settings"]).read_text())
        series = json.loads(Path(artifacts["series"]).read_text())
        from tasks.series import STEPS, period_index

        self.lookback, self.tr = s["lookback"], Transform(**s["transform"])
        self.freq = s.get("freq", "M")  # the course's models: monthly, no freq stored
        self.step = STEPS[self.freq]
        self.y = np.array(series["values"], dtype=np.float64)
        labels = series.get("times") or series["months"]
        self.last = (month_index(labels[-1]) if self.freq == "M"
                     else period_index(labels[-1], self.freq))  # fmt: skip
        self.model = LSTMForecaster(1, s["hidden"], s["n_layers"], highway=s.get("highway", 0))
        self.model.load_state_dict(checkpoint.load(Path(artifacts["weights"])))
        self.model.eval()

    def predict(self, context, model_input, params=None):
        import pandas as pd

        with refusing_bad_input():
            horizons = column(model_input, "horizon")
            n = len(horizons)
            histories = column(model_input, "history", required=False) or [None] * n
            lasts = column(model_input, "last_month", required=False) or [None] * n
            asks = [self.request(i, *row) for i, row in
                    enumerate(zip(horizons, histories, lasts, strict=True), 1)]  # fmt: skip
        out = [self.forecast(*ask) for ask in asks]
        return pd.DataFrame({"months": [m for m, _ in out], "forecast": [f for _, f in out]})

    def request(self, i: int, horizon, history, last_month) -> tuple[int, np.ndarray, int]:
        """An input checked: (horizon, the series to continue, the month of its last value)."""
        if missing(horizon) or isinstance(horizon, bool) or not isinstance(horizon, int | float):
            raise BadInput(f"input {i}: horizon is {what(horizon)}; send a whole number of "
                           f"months from 1 to {MAX_HORIZON}")  # fmt: skip
        if horizon != int(horizon) or not 1 <= horizon <= MAX_HORIZON:
            raise BadInput(f"input {i}: horizon {horizon:g} is not a whole number of months "
                           f"from 1 to {MAX_HORIZON}; send one in that range")  # fmt: skip
        history = [] if missing(history) else history
        if isinstance(history, str) or not hasattr(history, "__len__"):
            raise BadInput(f"input {i}: history is {what(history)}; send a list of the latest "
                           "monthly passenger counts, oldest first")  # fmt: skip
        values = [v.item() if isinstance(v, np.generic) else v for v in history]
        for j, v in enumerate(values, 1):
            if missing(v) or isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise BadInput(f"input {i}: history value {j} is {v!r}; passenger counts "
                               "are positive numbers")  # fmt: skip
        values = np.array(values, dtype=np.float64)
        if missing(last_month):
            return (int(horizon), np.concatenate([self.y, values]),
                    self.last + len(values) * self.step)  # fmt: skip
        if self.freq != "M":
            from tasks.series import FREQ_WORDS, period_index

            if (last := period_index(last_month, self.freq)) is None:
                raise BadInput(f"input {i}: last_month {last_month!r} is not a timestamp; send "
                               f"the {FREQ_WORDS[self.freq]} period of the last history value "
                               "(an ISO date, YYYY-Qn or YYYY)")  # fmt: skip
        elif (last := month_index(last_month)) is None:
            raise BadInput(f"input {i}: last_month {last_month!r} is not a month; send "
                           '"YYYY-MM", the month of the last history value')  # fmt: skip
        need = self.lookback + self.tr.first
        if len(values) < need:
            raise BadInput(f"input {i}: history has {len(values)} months; with last_month "
                           f"the model needs the last {need} at least (its window of "
                           f"{self.lookback}, seasonal lag {self.tr.lag}, "
                           f"differences {self.tr.diff}), or leave "
                           "last_month out to continue its own series")  # fmt: skip
        return int(horizon), values, last

    @torch.no_grad()
    def forecast(self, horizon: int, y: np.ndarray, last: int) -> tuple[list[str], list[float]]:
        """`horizon` months after series `y`, whose last value is month `last`."""
        s = list(self.tr.forward(y)[-self.lookback :])  # transformed: the model's input
        for _ in range(horizon):
            x = torch.tensor(s[-self.lookback :], dtype=torch.float32)[None, :, None]
            pred = float(self.model(x)[0, -1, 0])
            s.append(pred)
            y = np.append(y, self.tr.invert(np.array([pred]), np.array([len(y)]), y))
        if self.freq == "M":
            months = [month_name(last + k) for k in range(1, horizon + 1)]
        else:
            from tasks.series import period_label

            months = [period_label(last + k * self.step, self.freq) for k in range(1, horizon + 1)]
        return months, y[-horizon:].tolist()


@task(name="register", cache_policy=NO_CACHE)
def register_task(run_id: str, model, series, ev, config) -> dict:
    """The trained forecaster as this pyfunc, registered."""
    return log_forecaster(run_id, model, series, ev, config, config.pipeline)


def log_forecaster(run_id: str, model, series, ev, config, name: str) -> dict:
    """Log the trained forecaster as the pyfunc and register a new version: {version, uri}.
    series: the ingest stage's output; ev: the flow's Evaluator (its transform)."""
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType, Array

    from tasks.series import read_series, season_length

    months, values = read_series(series)
    t = config.train
    settings = {"lookback": config.windows.lookback, "transform": asdict(ev.tr),
                "hidden": t.hidden, "n_layers": t.n_layers,
                "highway": config.windows.lookback if t.highway else 0}  # fmt: skip
    signature = ModelSignature(
        # Any: request() checks each value as sent, in every payload form (typed columns
        # would let MLflow turn null into "None" and "3" into 3.0 before it)
        Schema([ColSpec(AnyType(), "horizon"), ColSpec(AnyType(), "history", required=False),
                ColSpec(AnyType(), "last_month", required=False)]),
        Schema([ColSpec(Array("string"), "months"), ColSpec(Array("double"), "forecast")]),
    )  # fmt: skip
    series_json = {"months": months, "values": values.tolist()}
    if config.data.own:  # your own series: its frequency and timestamps travel with the model
        settings |= {"freq": config.data.freq,
                     "season": season_length(config.data.freq, config.data.season)}  # fmt: skip
        series_json = {"times": months, "freq": config.data.freq, "values": values.tolist()}
    return log_pyfunc(run_id, name, ENTRY, model, {"settings": settings, "series": series_json},
                      signature, pd.DataFrame({"horizon": [12.0]}), ["pandas"])  # fmt: skip
