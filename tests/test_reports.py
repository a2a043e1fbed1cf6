"""The figures and markdown reports a person reads: titled with the run, axes in real units
(whole epochs, calendar months), legends off the data, the registered model named, and every
report's first line naming model, version, profile and primary score."""

import re

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from flows.config import load_config  # noqa: E402
from tasks.engine import tracking  # noqa: E402
from tasks.plots import report_header, title  # noqa: E402


def draw(fig):
    """Lay out and draw the figure as savefig would; its renderer."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def tick_texts(ax) -> list[str]:
    return [t.get_text().replace("\u2212", "-") for t in ax.get_xticklabels() if t.get_text()]


def assert_integer_epochs(ax):
    labels = tick_texts(ax)
    assert labels and all(re.fullmatch(r"-?\d+", t) for t in labels), labels
    assert ax.get_xlabel() == "epoch"


def assert_off_the_data(fig, legend, axes):
    """The legend overlaps no axes and lies inside the figure (savefig keeps it whole)."""
    box = legend.get_window_extent(draw(fig))
    for ax in axes:
        assert not box.overlaps(ax.get_window_extent()), (box, ax.get_window_extent())
    assert box.x0 >= fig.bbox.x0 - 1 and box.x1 <= fig.bbox.x1 + 1
    assert box.y0 >= fig.bbox.y0 - 1 and box.y1 <= fig.bbox.y1 + 1


def assert_header(text: str, model: str, version, profile: str, metric: str):
    first = text.splitlines()[0]
    assert first.startswith("# ") and f"model {model}," in first, first
    assert f"version {version}" in first and f"profile {profile}" in first, first
    assert metric in first and text.splitlines()[1] == "", first


def test_title_and_header_name_the_run():
    assert title("training loss", "word2vec", "quick", "word2vec", 3) == (
        "training loss\nword2vec, profile quick, model word2vec version 3"
    )
    assert title("loss", "fundamentals", "parity", "numpy_rnn") == (
        "loss\nfundamentals, profile parity, model numpy_rnn"
    )
    head = report_header("test translations", "seq2seq", 2, "quick", "test_bleu", 12.3456)
    assert head.endswith(": model seq2seq, version 2, profile quick, test_bleu 12.35\n\n")
    head = report_header("samples", "charlm", None, "quick", "test_ppl", None)
    assert "version none (not registered)" in head and "test_ppl -" in head


@pytest.mark.parametrize("epochs", [2, 3, 7])
def test_word2vec_loss_has_whole_epochs_and_a_title(epochs):
    from tasks.evaluation import loss_figure

    loss = list(np.linspace(7.1, 6.6, epochs))
    fig = loss_figure(loss, title("training loss", "word2vec", "quick", "word2vec", 4))
    (ax,) = fig.axes
    draw(fig)
    assert "word2vec, profile quick, model word2vec version 4" in ax.get_title()
    assert_integer_epochs(ax)
    assert "cross-entropy" in ax.get_ylabel()
    assert ax.lines[0].get_xdata().tolist() == list(range(1, epochs + 1))
    assert_off_the_data(fig, ax.get_legend(), [ax])


def test_fundamentals_loss_names_kind_and_profile():
    from flows.fundamentals import loss_figure

    heading = title("training and validation loss", "fundamentals", "quick", "numpy_lstm")
    fig = loss_figure("numpy_lstm", [2.9, 2.1], [4.5, 3.2], heading)
    (ax,) = fig.axes
    draw(fig)
    assert "profile quick, model numpy_lstm" in ax.get_title()
    assert_integer_epochs(ax)
    assert "summed" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training", "validation"]
    assert_off_the_data(fig, ax.get_legend(), [ax])


def charlm_results(kinds, epochs=3) -> list[dict]:
    out = []
    for i, kind in enumerate(kinds):
        train = [30.0 / (e + 1) + i for e in range(epochs)]
        test = [t * 1.1 for t in train]
        out.append({"kind": kind, "test_ppl": test[-1], "hist": {"train_ppl": train,
                    "test_ppl": test}, "samples": {"En un": {"greedy": " lugar",
                                                             "sampled": " luga"}}})  # fmt: skip
    return out


@pytest.mark.parametrize("n_kinds", [8, 7, 1])
def test_perplexity_one_panel_per_kind_registered_marked(n_kinds):
    """All kinds (quick, parity), seven (an empty panel), gru alone (best)."""
    from flows.charlm import perplexity_figure
    from models.charlm_kinds import KINDS

    kinds = list(KINDS)[:n_kinds] if n_kinds > 1 else ["gru"]
    registered = "gru"
    heading = title("perplexity", "charlm", "quick", f"charlm ({registered})", 3)
    fig = perplexity_figure(charlm_results(kinds), heading, registered, 3)
    draw(fig)
    assert "charlm, profile quick, model charlm" in fig.get_suptitle()
    assert "version 3" in fig.get_suptitle()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == n_kinds
    for ax, kind in zip(panels, kinds, strict=True):
        assert len(ax.lines) == 2 and ax.get_title().startswith(f"{kind}: test ")
        assert [ln.get_linestyle() for ln in ax.lines] == ["-", "--"]
        assert_integer_epochs(ax)
        assert ax.get_yscale() == "log"
    assert panels[0].get_ylabel().startswith("perplexity")
    marked = [ax for ax in panels if "registered, version 3" in ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in marked] == [registered]
    if "lstm_bidir" in kinds:
        assert "not comparable" in panels[kinds.index("lstm_bidir")].get_title()
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["train", "test"]
    assert_off_the_data(fig, legend, panels + [fig._suptitle])


def test_charlm_reports_name_the_registered_kind(monkeypatch):
    from flows import charlm

    logged = {}
    monkeypatch.setattr(tracking, "log_figure", lambda run, fig, name: logged.update({name: fig}))
    monkeypatch.setattr(tracking, "log_text", lambda run, text, name: logged.update({name: text}))
    results = charlm_results(["rnn", "gru", "lstm_bidir"])
    charlm.log_reports("run", "quick", results, results[1], {"version": 5, "uri": "models:/x"})
    md = logged["samples.md"]
    assert_header(md, "charlm (gru)", 5, "quick", "test_ppl")
    assert f"test_ppl {results[1]['test_ppl']:.4g}" in md.splitlines()[0]
    assert "| **gru** (registered) | `En un` |" in md and "| rnn | `En un` |" in md
    assert "version 5" in logged["perplexity.png"].get_suptitle()
    logged.clear()
    charlm.log_reports("run", "quick", results[2:], None, None)  # bidir alone: none registered
    assert_header(logged["samples.md"], "charlm", "none", "quick", "test_ppl")


def test_seq2seq_translations_table():
    from flows.seq2seq import translations_markdown

    decoded = {"greedy": ["a man .", "two dogs ."], "beam": ["a man.", "two dogs."]}
    table = translations_markdown(["Ein Mann.", "Zwei Hunde."], ["A man.", "Two dogs."], decoded, 1)
    assert table.splitlines() == ["| source | reference | greedy | beam |", "|---|---|---|---|",
                                  "| Ein Mann. | A man. | a man . | a man. |"]  # fmt: skip


def test_forecast_has_calendar_months(data_dir):
    """Real airline months and windows; an untrained forecaster is enough for the axes."""
    from flows.airline import forecast_figure
    from models.forecaster import LSTMForecaster
    from tasks.series import baselines, ingest_series, read_series, window_series
    from tasks.train.airline import Evaluator

    series = ingest_series.fn("airline", "airline_passengers", "airline-passengers.csv", 144)
    wins = window_series.fn("airline", series, load_config("airline", "quick").windows)
    ev = Evaluator(series, wins)
    torch.manual_seed(0)
    model = LSTMForecaster(1, 8)
    months = read_series(series)[0]
    heading = title("passengers", "airline", "quick", "airline", 2)
    fig = forecast_figure(ev, model, baselines(ev.y, wins.stats["n_train"]), months, heading)
    (ax,) = fig.axes
    draw(fig)
    assert "airline, profile quick, model airline version 2" in ax.get_title()
    assert ax.get_xlabel() == "month" and "passengers" in ax.get_ylabel()
    x = ax.lines[0].get_xdata()
    assert np.issubdtype(x.dtype, np.datetime64)
    assert str(x[0]) == "1949-01-01" and str(x[-1]) == "1960-12-01"
    years = [int(t) for t in tick_texts(ax)]  # "1950", "1951", ...
    assert len(years) >= 5 and all(1949 <= y <= 1961 for y in years), years
    split = ax.lines[-1].get_xdata()[0]  # the first test month
    assert str(np.datetime64(split, "M")) == months[wins.stats["n_train"]]
    assert_off_the_data(fig, ax.get_legend(), [ax])


@pytest.fixture
def captured(monkeypatch):
    """What the flows log as figures and texts, kept (and still logged to MLflow)."""
    logged: dict[tuple[str, str], object] = {}
    real_figure, real_text = tracking.log_figure, tracking.log_text

    def log_figure(run_id, fig, name):
        logged[(run_id, name)] = fig
        real_figure(run_id, fig, name)

    def log_text(run_id, text, name):
        logged[(run_id, name)] = text
        real_text(run_id, text, name)

    monkeypatch.setattr(tracking, "log_figure", log_figure)
    monkeypatch.setattr(tracking, "log_text", log_text)
    return logged


def test_flows_log_titled_figures_and_headed_reports(prefect_server, data_dir, captured):
    """fundamentals, airline and word2vec on a few epochs: each logged figure and report as
    checked above, with the run's own profile and the version the run registered."""
    from flows.airline import airline
    from flows.fundamentals import fundamentals
    from flows.word2vec import word2vec

    epochs = ["train.numpy_rnn_epochs=2", "train.numpy_lstm_epochs=3", "train.torch_epochs=2"]
    fundamentals(config=load_config("fundamentals", "quick", epochs))
    losses = {k: v for k, v in captured.items() if k[1] == "loss.png"}
    reports = {k: v for k, v in captured.items() if k[1] == "predictions.md"}
    assert len(losses) == len(reports) == 3
    for (run_id, _), fig in losses.items():
        (ax,) = fig.axes
        draw(fig)
        kind = tracking.get_run(run_id).data.params["model.kind"]
        assert f"fundamentals, profile quick, model {kind}" in ax.get_title()
        assert_integer_epochs(ax)
        assert_off_the_data(fig, ax.get_legend(), [ax])
        md = reports[(run_id, "predictions.md")]
        assert_header(md, kind, "none", "quick", "test_loss")
        assert md.splitlines()[2] == "| input | target | predicted |"

    captured.clear()
    run_id = airline(config=load_config("airline", "quick", ["train.epochs=2",
                                                             "train.eval_every=1"]))  # fmt: skip
    fig = captured[(run_id, "forecast.png")]
    version = tracking.get_run(run_id).data.tags["registered_model"].split("/")[1]
    assert f"airline, profile quick, model airline version {version}" in fig.axes[0].get_title()
    assert np.issubdtype(fig.axes[0].lines[0].get_xdata().dtype, np.datetime64)

    captured.clear()  # word2vec logs its loss curve after registering: the version is known
    smoke = ["data.limit_rows=1500", "train.max_steps_per_epoch=3", "train.epochs=2"]
    run_id = word2vec(config=load_config("word2vec", "quick", smoke))
    fig = captured[(run_id, "loss.png")]
    version = tracking.get_run(run_id).data.tags["registered_model"].split("/")[1]
    assert f"word2vec, profile quick, model word2vec version {version}" in fig.axes[0].get_title()
    draw(fig)
    assert_integer_epochs(fig.axes[0])
