"""The benchmark figure: every part's candidates as ratios to their baseline, ours highlighted.

The runner (benchmarks/run.py) turns its results into `Measurement`s: one per candidate and
scenario, the candidate's cost over its baseline's in the same scenario (time per call, wall
time to serve every caller, time per contended acquisition: lower is better everywhere). It can
`save` them as JSON and `draw` them; `load` reads a saved file back, so the figure can be drawn
again without measuring anything.

The figure has one panel per part and baseline, in the order the measurements come: a part
whose scenarios have two baselines (a bare call in memory, raw redis-py on Redis) gets two. In a
panel every candidate is a row with one bar per scenario, drawn from the baseline (the dashed
line at 1) to the candidate's ratio, its value written beside it; `resilient`'s rows are shaded
and their names bold. A panel whose ratios span more than `LOG_SPAN` is drawn on a log scale.
The baseline is the line, not a row; the bare call is no row of a panel whose baseline is
another (on Redis it does none of the work and would stretch the scale a thousandfold). A
candidate that failed (a ratio of None) is marked as such instead of a bar.

The output is deterministic for given measurements: the Agg backend, fixed sizes and fonts, no
metadata in the PNG that names the software or a time, and a palette of 256 colours, which
keeps the file near 150 KB.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

OURS = "resilient"  # a candidate whose name starts with this is ours
BARE = "bare call"  # the name every part gives the undecorated function (cache.BARE)
LOG_SPAN = 10.0  # a panel whose largest ratio is more than this many times its smallest
COLUMNS = 2
DPI = 100
WIDTH = 8.0  # inches per column
BAR = 0.13  # inches per bar
PANEL = 0.9  # inches per panel beyond its rows and legend: its title and axis
LEGEND_COLUMNS = 2


class Measurement(NamedTuple):
    """One candidate in one scenario: its cost as a ratio to the scenario's baseline."""

    part: str  # the runner's part: retry, breaker, cache, lock, ...
    scenario: str
    baseline: str  # the candidate the ratio is taken to
    candidate: str
    ratio: float | None  # None: the candidate failed


def save(path: Path, measurements: Iterable[Measurement], *, caption: str) -> None:
    """Write *measurements* and the *caption* that says where they come from as JSON."""
    rows = [{**m._asdict(), "ratio": _rounded(m.ratio)} for m in measurements]
    text = json.dumps({"caption": caption, "measurements": rows}, indent=1)
    path.write_text(text + "\n", encoding="utf-8")


def load(path: Path) -> tuple[list[Measurement], str]:
    """Read what `save` wrote: the measurements and their caption."""
    saved = json.loads(path.read_text(encoding="utf-8"))
    return [Measurement(**row) for row in saved["measurements"]], saved["caption"]


class Panel:
    """The measurements of one part against one baseline, as candidates by scenarios."""

    def __init__(self, part: str, baseline: str) -> None:
        self.part = part
        self.baseline = baseline
        self.scenarios: list[str] = []
        self.candidates: list[str] = []
        self.ratios: dict[tuple[str, str], float | None] = {}  # (candidate, scenario) -> ratio

    def add(self, measurement: Measurement) -> None:
        if measurement.scenario not in self.scenarios:
            self.scenarios.append(measurement.scenario)
        if measurement.candidate not in self.candidates:
            self.candidates.append(measurement.candidate)
        # as saved, so that a figure drawn from a saved file is the one the run drew
        self.ratios[measurement.candidate, measurement.scenario] = _rounded(measurement.ratio)

    def pitch(self) -> float:
        """The distance from one candidate's row to the next, in bars."""
        return len(self.scenarios) + 0.6

    def legend(self) -> float:
        """The room the legend takes below the last row, in bars."""
        return 1.4 * math.ceil(len(self.scenarios) / LEGEND_COLUMNS) + 0.6

    def height(self) -> float:
        """The panel's height in the figure, in inches."""
        return PANEL + BAR * (self.pitch() * len(self.candidates) + self.legend())


def panels(measurements: Iterable[Measurement]) -> list[Panel]:
    """Group *measurements* by part and baseline, leaving out the rows the figure does not show."""
    grouped: dict[tuple[str, str], Panel] = {}
    for measurement in measurements:
        if measurement.candidate == measurement.baseline:
            continue
        if measurement.candidate == BARE:
            continue
        key = measurement.part, measurement.baseline
        grouped.setdefault(key, Panel(*key)).add(measurement)
    return list(grouped.values())


def draw(path: Path, measurements: Sequence[Measurement], *, caption: str) -> None:
    """Draw every panel of *measurements* into the PNG file *path*."""
    import matplotlib  # noqa: PLC0415 - only a run that draws needs it

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415 - matplotlib's own dependency

    # each panel, in order, goes to the column that is shortest so far: the columns end level
    columns: list[list[Panel]] = [[] for _ in range(COLUMNS)]
    for panel in panels(measurements):
        min(columns, key=lambda column: sum(p.height() for p in column)).append(panel)
    heights = [[panel.height() for panel in column] for column in columns]
    tallest = max(sum(column) for column in heights)
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 8}):
        figure = pyplot.figure(figsize=(WIDTH * COLUMNS, tallest + 0.8), layout="constrained")
        for subfigure, column, sizes in zip(
            figure.subfigures(1, COLUMNS), columns, heights, strict=True
        ):
            # an empty row at the foot of a shorter column keeps its panels at their height
            filled = [*sizes, max(tallest - sum(sizes), 0.01)]
            grid = subfigure.add_gridspec(len(filled), 1, height_ratios=filled)
            for index, panel in enumerate(column):
                _draw_panel(subfigure.add_subplot(grid[index]), panel)
        figure.suptitle(
            "resilient beside the libraries people use: each candidate's cost as a ratio to "
            "its baseline, lower is better",
            fontsize=11,
            fontweight="bold",
        )
        figure.supxlabel(caption, fontsize=8, color="dimgray")
        drawn = io.BytesIO()
        figure.savefig(drawn, format="png", dpi=DPI, metadata={"Software": None})
        pyplot.close(figure)
    # flat colours and grey text need no more than a palette of 256: a third of the size
    with Image.open(drawn) as image:
        image.convert("RGB").quantize(colors=256).save(path, format="PNG", optimize=True)


def _draw_panel(axes: Any, panel: Panel) -> None:
    """Draw *panel* on *axes*: a row per candidate, a bar per scenario from the baseline."""
    from matplotlib.patches import Patch  # noqa: PLC0415 - imported by draw() already

    values = [ratio for ratio in panel.ratios.values() if ratio is not None]
    low, high = min([*values, 1.0]), max([*values, 1.0])
    logarithmic = high / low > LOG_SPAN
    step = panel.pitch()
    colors = [f"C{index % 10}" for index in range(len(panel.scenarios))]
    for row, candidate in enumerate(panel.candidates):
        top = row * step
        if candidate.startswith(OURS):
            axes.axhspan(top - 0.5, top + step - 1.1, color="#fff2b3", zorder=0)
        for column, scenario in enumerate(panel.scenarios):
            y = top + column
            if (candidate, scenario) not in panel.ratios:
                continue
            ratio = panel.ratios[candidate, scenario]
            if ratio is None:
                axes.text(1.0, y, "  failed", va="center", ha="left", color=colors[column])
                continue
            axes.barh(y, ratio - 1.0, left=1.0, height=0.85, color=colors[column], zorder=2)
            axes.text(
                ratio,
                y,
                f" {_number(ratio)} ",
                va="center",
                ha="left" if ratio >= 1 else "right",
                fontsize=7,
                zorder=3,
            )
    axes.axvline(1.0, color="black", linestyle="--", linewidth=0.8, zorder=1)
    centres = [row * step + (len(panel.scenarios) - 1) / 2 for row in range(len(panel.candidates))]
    axes.set_yticks(centres, panel.candidates)
    for label in axes.get_yticklabels():
        if label.get_text().startswith(OURS):
            label.set_fontweight("bold")
    # below the last row, the room the legend takes
    axes.set_ylim(len(panel.candidates) * step + panel.legend() - 0.5, -0.8)
    if logarithmic:
        axes.set_xscale("log")
        axes.set_xlim(low / 3, high * 4)
    else:
        axes.set_xlim(min(low, 1.0) - 0.1 * (high - low), high + 0.25 * (high - low))
    axes.xaxis.set_major_formatter(lambda value, _: f"{_number(value)}x")
    axes.set_title(f"{panel.part}: x {panel.baseline}", loc="left", fontweight="bold")
    axes.grid(axis="x", color="#dddddd", zorder=0)
    axes.set_axisbelow(True)
    handles = [
        Patch(color=color, label=scenario)
        for color, scenario in zip(colors, panel.scenarios, strict=True)
    ]
    axes.legend(
        handles=handles, loc="lower right", ncols=LEGEND_COLUMNS, fontsize=7, framealpha=0.9
    )


def _rounded(ratio: float | None) -> float | None:
    """*ratio* to four significant digits, as `save` keeps it."""
    return None if ratio is None else float(f"{ratio:.4g}")


def _number(value: float) -> str:
    """*value* in three significant digits, whole from 100 on, with no exponent."""
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.1g}"
