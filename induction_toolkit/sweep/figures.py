"""A sweep's summary figures: each metric against each grid parameter, runs as points, the mean
over the other parameters (e.g. seeds) as a line. One PNG per parameter in ``OUT/figures``."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write_bytes

if TYPE_CHECKING:
    from .result import SweepResult

# (summary key, axis label): what each figure shows, one panel each.
METRICS = (("final_loss", "final eval loss (nats)"),
           ("max_prefix_matching", "max prefix-matching [0, 1]"),
           ("induction_layer", "induction layer"),
           ("onset_step", "onset step"))


def _axis(values: list[Any]) -> tuple[list[float], list[str] | None]:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    return [float(i) for i in range(len(values))], [str(v) for v in values]


def sweep_figure(result: "SweepResult", param: str) -> Any:
    """Figure of every metric against ``param``; each run a point, the mean per value a line.
    Runs without a value (failed, no onset) are left out of that panel and counted in its title."""
    from ..viz.figures import new_figure

    values = result.grid[param]
    xs, labels = _axis(values)
    fig = new_figure(3.2 * len(METRICS), 3.0)
    axes = fig.subplots(1, len(METRICS))
    for ax, (key, label) in zip(axes, METRICS):
        means_x, means_y, missing = [], [], 0
        for x, v in zip(xs, values):
            ys = [r.summary.get(key) for r in result.runs if r.params.get(param) == v]
            got = [y for y in ys if y is not None]
            missing += len(ys) - len(got)
            ax.scatter([x] * len(got), got, s=14, alpha=0.6, color="tab:blue")
            if got:
                means_x.append(x)
                means_y.append(sum(got) / len(got))
        ax.plot(means_x, means_y, color="black", lw=1.2, marker="_", label="mean")
        ax.set_xlabel(param)
        ax.set_ylabel(label)
        if labels is not None:
            ax.set_xticks(xs, labels, rotation=30)
        ax.set_title(f"{label.split(' (')[0]}" + (f" ({missing} none)" if missing else ""),
                     fontsize=9)
    return fig


def write_sweep_figures(result: "SweepResult", directory: Path) -> list[Path]:
    """Write ``<param>.png`` for every grid parameter with two or more values; returns the paths.
    ``seed`` gets its own figure only when it is the only such parameter (else it is what the
    points of the other figures spread over)."""
    from ..viz.figures import png_bytes

    params = [k for k, v in result.grid.items() if len(v) > 1]
    if len(params) > 1:
        params = [k for k in params if k != "seed"]
    paths = []
    for param in params:
        path = Path(directory) / f"{param}.png"
        atomic_write_bytes(path, png_bytes(sweep_figure(result, param)))
        paths.append(path)
    return paths
