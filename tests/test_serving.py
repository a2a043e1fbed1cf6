"""Every champion serves raw input: word2vec, charlm and airline trained on a slice, each
served by MLflow's own scoring server (`mlflow models serve`), asked over HTTP."""

import json
import math

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from flows.config import load_config
from tasks.engine import tracking
from tests.servers import Stack, post


def serve(data_dir, name: str):
    """(the server's /invocations URL, its Stack) for version 1 of registered model `name`."""
    stack = Stack(data_dir)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    return stack.model_server(f"models:/{name}/1", uri) + "/invocations", stack


def ask(url: str, rows: list[dict], params: dict | None = None) -> tuple[int, dict]:
    body = {"dataframe_records": rows} | ({"params": params} if params else {})
    return post(url, json.dumps(body).encode())


def refused(url: str, rows: list[dict], params: dict | None = None) -> str:
    status, body = ask(url, rows, params)
    assert status == 400, body
    return body["message"]


def payload_forms(rows: list[dict], values: bool = True) -> dict[str, dict]:
    """The same rows in each JSON payload form MLflow's scoring server accepts, by name; with
    `values`, also as bare values (MLflow maps those to a model's only input column)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    forms = {
        "dataframe_records": {"dataframe_records": rows},
        "dataframe_split": {"dataframe_split": {
            "columns": columns, "data": [[row.get(c) for c in columns] for row in rows]}},
        "inputs records": {"inputs": rows},
        "inputs columns": {"inputs": {c: [row.get(c) for row in rows] for c in columns}},
        "instances records": {"instances": rows},
    }  # fmt: skip
    if values and len(columns) == 1:
        forms["inputs values"] = {"inputs": [row[columns[0]] for row in rows]}
        forms["instances values"] = {"instances": [row[columns[0]] for row in rows]}
    return forms


def refused_in_every_form(url: str, good: dict, column: str, expect: str, values: bool = True,
                          bads=((42, "int"), (None, "null"), (True, "bool"))) -> None:  # fmt: skip
    """[good, good with `column` set to each bad value]: a 400 naming input 2 in every payload
    form; `expect` holds {i} and {what}, e.g. "input {i}: text is {what}". MLflow's own parser
    of `instances` records makes ONE numpy array of a column (parse_instances_data), which turns
    ["a", 42] into ["a", "42"] before any model sees it: there the bad row goes alone."""
    for bad, what in bads:
        rows = [good, good | {column: bad}]
        forms = {form: (body, 2) for form, body in payload_forms(rows, values).items()}
        if bad is not None:
            forms["instances records"] = ({"instances": [good | {column: bad}]}, 1)
        for form, (body, i) in forms.items():
            status, answer = post(url, json.dumps(body).encode())
            assert status == 400, (form, bad, answer)
            assert expect.format(i=i, what=what) in answer["message"], (form, bad, answer)


def test_word2vec_serves_words_and_texts(prefect_server, data_dir):
    from flows.word2vec import word2vec

    smoke = ["data.limit_rows=1500", "train.max_steps_per_epoch=3", "train.epochs=2"]
    word2vec(config=load_config("word2vec", "quick", smoke))
    model = tracking.load_model("word2vec", 1)  # the torch module, as retrain scores it
    assert model.word_vectors().shape[1] == 50
    url, stack = serve(data_dir, "word2vec")
    try:
        rows = [{"text": "Father"}, {"text": "my father loves the school day xyzzyq"}]
        status, body = ask(url, rows, {"k": 5})
        assert status == 200, body
        word, text = body["predictions"]
        assert word["tokens"] == ["father"] and word["unknown"] == []
        assert len(word["vector"]) == 50 and len(word["neighbors"]) == 5
        assert "father" not in word["neighbors"]
        assert text["neighbors"] == [] and text["unknown"] == ["xyzzyq"]
        assert text["tokens"][0] == "father" and len(text["tokens"]) >= 3
        assert text["label"] in (0, 1) and 0.5 <= text["label_probability"] <= 1
        # a text's vector is the mean of its words' vectors
        status, body = ask(url, [{"text": t} for t in text["tokens"]])
        assert status == 200
        each = np.array([p["vector"] for p in body["predictions"]])
        assert np.allclose(each.mean(axis=0), text["vector"], atol=1e-6)
        assert np.allclose(each[0], word["vector"])
        assert len(body["predictions"][0]["neighbors"]) == 10  # the run's evaluate.k

        assert "input 2: text is int, not text" in refused(url, [{"text": "day"}, {"text": 5}])
        assert "input 1: text is null" in refused(url, [{"text": None}])
        assert "input 1: text is empty" in refused(url, [{"text": "   "}])
        refused_in_every_form(url, {"text": "day"}, "text", "input {i}: text is {what}, not text")
        message = refused(url, [{"text": "day"}, {"text": "qqqzzz"}])
        assert "input 2: 'qqqzzz'" in message and "in the vocabulary" in message
        assert "nothing is left" in refused(url, [{"text": "the and of"}])
        assert "param k=0 is out of range" in refused(url, [{"text": "day"}], {"k": 0})
        assert post(url, b"not json")[0] == 400
        assert ask(url, rows[:1])[0] == 200  # still serving
    finally:
        stack.stop()


def test_the_served_label_is_the_classifier_s():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from flows.embedder import Embedder, classifier_json

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) * 3 + 1
    y = (x[:, 0] + rng.normal(size=200) > 1).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced")).fit(x, y)
    served = Embedder()
    served.classifier = classifier_json(pipe)
    for row, label, probs in zip(x, pipe.predict(x), pipe.predict_proba(x), strict=True):
        got, p = served.label(row)
        assert got == label and p == pytest.approx(probs.max())


def test_charlm_serves_a_continuation(prefect_server, data_dir):
    from flows.charlm import charlm
    from tasks.train.charlm import continue_text

    small = ["windows.n_train=1024", "windows.n_test=256", "train.epochs=1",
             "train.hidden=16", 'train.kinds=["gru", "lstm_scratch"]']  # fmt: skip
    parent = charlm(profile="quick", overrides=small)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = c.get_model_version("charlm", "1")
    children = c.search_runs([c.get_run(parent).info.experiment_id],
                             f"tags.mlflow.parentRunId = '{parent}'")  # fmt: skip
    best = min(children, key=lambda r: r.data.metrics["test_ppl"])
    assert version.run_id == best.info.run_id  # the best child's model is registered
    model = tracking.load_model("charlm", 1)
    assert model.kind == best.data.params["model.kind"]
    vocab = tracking.load_json(parent, "vocab.json")
    url, stack = serve(data_dir, "charlm")
    try:
        rows = [{"prompt": "En un lugar de la Mancha"}, {"prompt": "Sancho, 123"}]
        params = {"length": 40, "temperature": 0.7, "seed": 3}
        status, body = ask(url, rows, params)
        assert status == 200, body
        first, second = body["predictions"]
        assert first["prompt"] == "en un lugar de la mancha" and second["prompt"] == "sancho "
        assert all(len(p["continuation"]) == 40 for p in body["predictions"])
        assert set(first["continuation"] + second["continuation"]) <= set(vocab)
        assert ask(url, rows, params)[1] == body  # the seed makes it reproducible
        status, greedy = ask(url, rows[:1], {"length": 20, "temperature": 0})
        local = continue_text(model, vocab, "en un lugar de la mancha", 20)
        assert greedy["predictions"][0]["continuation"] == local[len("en un lugar de la mancha") :]
        status, body = ask(url, rows[:1])  # the run's defaults: evaluate.n_chars
        assert status == 200 and len(body["predictions"][0]["continuation"]) == 30

        assert "input 1: prompt is int, not text" in refused(url, [{"prompt": 7}])
        assert "input 2: prompt is null" in refused(url, [rows[0], {"prompt": None}])
        assert "input 1: prompt '123 !!' has no letter" in refused(url, [{"prompt": "123 !!"}])
        refused_in_every_form(url, rows[0], "prompt", "input {i}: prompt is {what}, not text")
        assert "param length=-5 is out of range" in refused(url, rows, {"length": -5})
        assert "param temperature=-1.0" in refused(url, rows, {"temperature": -1})
    finally:
        stack.stop()


def test_airline_serves_dated_forecasts(prefect_server, data_dir):
    import torch

    from flows.airline import airline

    airline(profile="quick", overrides=["train.epochs=20", "train.eval_every=10"])
    model = tracking.load_model("airline", 1)
    last4 = [606.0, 508.0, 461.0, 390.0]  # 1960-09 .. 1960-12, the series' last months
    with torch.no_grad():  # quick profile: no transform, a window of 4 months
        expected = float(model(torch.tensor(last4)[None, :, None])[0, -1, 0])
    url, stack = serve(data_dir, "airline")
    try:
        status, body = ask(url, [{"horizon": 3}])
        assert status == 200, body
        (out,) = body["predictions"]
        assert out["months"] == ["1961-01", "1961-02", "1961-03"]
        assert out["forecast"][0] == pytest.approx(expected, rel=1e-5)
        assert all(math.isfinite(v) for v in out["forecast"])

        history = [472.0, 535.0, 622.0, 606.0]  # its own series: 1960-06 .. 1960-09
        rows = [{"horizon": 2, "history": history, "last_month": "1960-09"},
                {"horizon": 14, "history": [430.0]}]  # fmt: skip
        status, body = ask(url, rows)
        assert status == 200, body
        own, more = body["predictions"]
        assert own["months"] == ["1960-10", "1960-11"] and len(own["forecast"]) == 2
        assert more["months"][0] == "1961-02" and more["months"][-1] == "1962-03"
        assert len(more["forecast"]) == 14  # the history continued the training series

        assert "input 1: horizon -2 is not a whole number" in refused(url, [{"horizon": -2}])
        assert "input 2: horizon 1.5" in refused(url, [{"horizon": 1}, {"horizon": 1.5}])
        assert "input 1: horizon is null" in refused(url, [{"horizon": None}])
        refused_in_every_form(
            url,
            {"horizon": 3},
            "horizon",
            "input {i}: horizon is {what}",
            False,
            (("3", "str"), (None, "null")),
        )  # no "3" taken for 3.0
        for form, body in payload_forms([{"horizon": 2, "last_month": None}]).items():
            status, answer = post(url, json.dumps(body).encode())  # null: no last_month
            assert status == 200 and len(answer["predictions"][0]["months"]) == 2, (form, answer)
        message = refused(url, [{"horizon": 2, "history": [100.0, -5.0]}])
        assert "input 1: history value 2 is -5.0" in message
        message = refused(url, [{"horizon": 2, "history": history, "last_month": "1960-13"}])
        assert "last_month '1960-13' is not a month" in message
        message = refused(url, [{"horizon": 2, "history": [1.0, 2.0], "last_month": "1960-06"}])
        assert "history has 2 months" in message and "needs the last 4" in message
    finally:
        stack.stop()
