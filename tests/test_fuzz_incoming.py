"""Property test of the door: a valid incoming word2vec CSV, mutated as users really mangle
files (labels, ids, quoting, encodings, empty lines, huge fields). Every mutant is either
refused by `seqflow ingest` naming its file and line, with nothing copied, or accepted and then
retrained to a FINISHED run — never a failure after training starts."""

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.engine.tracking import values as run_values

ROWS = [("910001", "0", "sunny day at the beach with friends"),
        ("910002", "1", "some hateful words about people here"),
        ("910003", "0", "coffee and a good book this morning"),
        ("910004", "0", "our team won the match tonight")]  # fmt: skip
SMALL = ["data.limit_rows=600", "train.epochs=1", "train.max_steps_per_epoch=2"]


def csv_text(rows, newline="\n") -> str:
    out = ["id,label,tweet"]
    for i, label, tweet in rows:
        out.append(f'{i},{label},"{tweet}"')
    return newline.join(out) + newline


MUTATIONS = {
    "label": lambda rows, n, v: [(i, v if k == n else lb, t) for k, (i, lb, t) in enumerate(rows)],
    "id": lambda rows, n, v: [(v if k == n else i, lb, t) for k, (i, lb, t) in enumerate(rows)],
    "copy id": lambda rows, n, v: [(rows[0][0] if k == n else i, lb, t)
                                   for k, (i, lb, t) in enumerate(rows)],  # fmt: skip
    "tweet": lambda rows, n, v: [(i, lb, v if k == n else t) for k, (i, lb, t) in enumerate(rows)],
    "row of the source": lambda rows, n, v: [*rows, ("1", "0", "@user when a father is dysfuncti"
                                                     "onal and is so selfish he drags his kids "
                                                     "into his dysfunction.   #run")],
}  # fmt: skip
values = st.one_of(
    st.sampled_from(["2", "-1", "yes", "", " 1", "1.0", "0", "910001", "1", "   "]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16", "utf-8 crlf",
                             "utf-8 blank lines", "unclosed quote", "huge field"])  # fmt: skip


def encode(text: str, how: str) -> bytes:
    if how == "utf-8 crlf":
        return text.replace("\n", "\r\n").encode()
    if how == "utf-8 blank lines":
        return text.replace("\n", "\n\n", 2).encode()
    if how == "unclosed quote":
        return text.replace('"', "", 1).encode()  # a quote that never closes
    if how == "huge field":
        return (text + f'910099,0,"{"x" * 200_000}"\n').encode()
    try:
        return text.encode(how)
    except UnicodeEncodeError:
        return text.encode("utf-8")


@pytest.fixture(scope="module")
def champion_free_store():
    """Each example gets its own data folder and store (set there, restored after)."""
    before = {k: os.environ.get(k) for k in ("SEQFLOW_DATA_DIR", "MLFLOW_TRACKING_URI")}
    yield
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@settings(max_examples=12, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.sampled_from(list(MUTATIONS)), st.integers(0, 3), values, encodings)
def test_every_mutant_is_refused_at_the_door_or_retrains_to_a_finished_run(
    prefect_server, champion_free_store, mutation, n, value, how
):
    from flows.ingest import ingest
    from flows.retrain import retrain
    from tests.resume import parent_runs

    rows = MUTATIONS[mutation](ROWS, n, value)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        os.environ["SEQFLOW_DATA_DIR"] = str(data)
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # set by the last example's MLflow client
        mutant = Path(tmp) / "mutant.csv"
        mutant.write_bytes(encode(csv_text(rows), how))
        try:
            ingest("word2vec", [mutant])
        except Exception as err:  # refused: named, nothing copied
            msg = str(err)
            assert "mutant.csv" in msg, msg
            assert "line" in msg or "UTF-16" in msg or "nothing new" in msg, msg
            folder = data / "incoming" / "word2vec"
            assert not folder.exists() or not any(folder.iterdir())
            return
        outcome = retrain(profile="quick", overrides=SMALL)  # accepted: it must train through
        (run,) = parent_runs(data, "word2vec")
        assert run.info.status == "FINISHED" and outcome["decision"] == "first model: champion"
        assert run_values(run)["train_rows"] >= 600
