"""What the logged figures and markdown reports share: a title naming the run, integer epoch
ticks, legends outside the data, and a report's first line (model, version, profile, score)."""

from matplotlib.ticker import MaxNLocator


def title(what: str, pipeline: str, profile: str, model: str | None = None, version=None) -> str:
    """Two lines: what the figure shows, then the run (pipeline, profile, model, version)."""
    run = f"{pipeline}, profile {profile}"
    if model:
        run += f", model {model}"
    if version is not None:
        run += f" version {version}"
    return f"{what}\n{run}"


def integer_epochs(ax, label: str = "epoch") -> None:
    """Epochs are whole numbers: no tick at 1.5."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(label)


def legend_outside(ax, **kwargs):
    """The legend right of the axes, off the data (a constrained layout makes room for it)."""
    kwargs.setdefault("fontsize", 8)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, **kwargs)


def report_header(what: str, model: str, version, profile: str, metric: str, score) -> str:
    """A markdown report's first line and a blank one; version None: not registered."""
    v = "none (not registered)" if version is None else version
    s = "-" if score is None else f"{score:.4g}"
    return f"# {what}: model {model}, version {v}, profile {profile}, {metric} {s}\n\n"
