"""The figure of ``atari-dqn plot`` (matplotlib, imported when drawing) and its size."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from atari_dqn.plot.curves import EVAL_STEPS, Group, View
from atari_dqn.plot.runs import PlotError

DEFAULT_SIZE = (1000, 600)  # pixels
_DPI = 100
_MIN_SIDE, _MAX_SIDE = 100, 10_000


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` in pixels."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None:
        raise PlotError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1000x600")
    return check_size(int(match.group(1)), int(match.group(2)))


def check_size(width: int, height: int) -> tuple[int, int]:
    for name, value in (("width", width), ("height", height)):
        if not _MIN_SIDE <= value <= _MAX_SIDE:
            raise PlotError(f"plot {name} {value} px is out of range [{_MIN_SIDE}, {_MAX_SIDE}]")
    return width, height


def draw(
    groups: Sequence[Group], size: tuple[int, int], title: str, view: View = EVAL_STEPS
) -> bytes:
    """The figure as PNG bytes of exactly ``size`` pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width, height = size
    fig, ax = plt.subplots(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    try:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, group in enumerate(groups):
            color = colors[i % len(colors)]
            style = "default" if view.x == "steps" else "steps-post"
            for run in group.runs:
                x, y = view.points(run)
                ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8, drawstyle=style)
            xs, mean, low, high = group.curve(view)
            label = f"{group.label} (n={len(group.runs)})"
            if view.x == "steps":
                ax.plot(xs, mean, color=color, linewidth=2, marker="o", markersize=3, label=label)
                ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)
            else:  # the grid: each run's last value carried forward, so drawn as steps
                ax.plot(xs, mean, color=color, linewidth=2, drawstyle="steps-post", label=label)
                ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0, step="post")
        ax.set_xlabel(view.xlabel)
        ax.set_ylabel(view.ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return buf.getvalue()
