"""The table of ``atari-dqn plot``: a row per group (finals, IQM, the difference to the first
group, thresholds), as text and as CSV.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from atari_dqn.plot.curves import EVAL_STEPS, Group, View
from atari_dqn.plot.runs import PlotError, Run
from atari_dqn.plot.stats import (
    CONFIDENCE,
    difference_ci,
    interquartile_mean,
    probability_of_improvement,
)


def summary_row(
    group: Group, view: View = EVAL_STEPS, thresholds: Sequence[float] = ()
) -> dict[str, Any]:
    """A group's row of the table, but the difference to the first group (see
    :func:`compare_to_first`)."""
    points = [view.values(r) for r in group.runs]
    final = group.finals(view)
    final_steps = [int(s[-1]) for s, _ in points]
    row: dict[str, Any] = {
        "group": group.label,
        "runs": len(group.runs),
        "seeds": " ".join(str(r.seed) for r in group.runs),
        "final_step_min": min(final_steps),
        "final_step_max": max(final_steps),
        "final_mean": float(final.mean()),
        "final_std": float(final.std()),
        "best": float(max(y.max() for _, y in points)),
        "iqm": interquartile_mean(final),
    }
    for threshold in thresholds:
        row.update(reach_summary(threshold, [view.first_reach(r, threshold) for r in group.runs]))
    return row


def reach_summary(
    threshold: float, reaches: Sequence[tuple[int, float | None] | None]
) -> dict[str, Any]:
    """The table's cells for one threshold: ``reached_T`` (``k/n``) and the median, min and max
    of the steps and of the minutes of the runs that reached it (None when none did, and for
    minutes when one of them has no clock)."""
    name = threshold_name(threshold)
    done = [r for r in reaches if r is not None]
    row: dict[str, Any] = {f"reached_{name}": f"{len(done)}/{len(reaches)}"}
    steps = [s for s, _ in done]
    minutes = [m for _, m in done if m is not None]
    for kind, values in (("steps", steps), ("minutes", minutes)):
        have = bool(done) and len(values) == len(done)
        median = float(np.median(values)) if have else None
        if kind == "steps" and median is not None and median.is_integer():
            median = int(median)
        row[f"{kind}_to_{name}_median"] = median
        row[f"{kind}_to_{name}_min"] = min(values) if have else None
        row[f"{kind}_to_{name}_max"] = max(values) if have else None
    return row


def threshold_name(threshold: float) -> str:
    """``30`` for 30.0, ``12.5`` for 12.5: how a threshold is written in column names."""
    return str(int(threshold)) if float(threshold).is_integer() else repr(float(threshold))


def parse_thresholds(texts: Sequence[str]) -> tuple[float, ...]:
    """``--threshold T[,T2,...]`` (the flag may be repeated): the numbers, in order, once each."""
    found: list[float] = []
    for text in texts:
        for piece in text.split(","):
            try:
                value = float(piece)
            except ValueError:
                raise PlotError(f"--threshold {piece.strip()!r}: not a number") from None
            if not math.isfinite(value):
                raise PlotError(f"--threshold {piece.strip()!r}: not a finite number")
            if value not in found:
                found.append(value)
    return tuple(found)


def compare_to_first(groups: Sequence[Group], rows: Sequence[dict[str, Any]], view: View) -> None:
    """Add to each row but the first ``final_diff`` (its final mean minus the first group's)
    and the 95% interval of that difference, ``final_diff_low``/``_high`` (rliable's stratified
    bootstrap, each group's runs resampled on their own), and ``final_p_improvement``
    (rliable's probability that one of its runs' finals is above one of the first group's); None
    for the first group. An interval that holds 0 is no difference detected at that confidence.

    Only finals at one step are compared: where a run of either group ends at another step
    (one still training, a shorter run), or where the groups play different games (their
    scores do not subtract), the four are None and ``final_diff_why`` says why."""
    base, base_steps = groups[0].finals(view), groups[0].final_steps(view)
    base_games = _games_of(groups[0])
    for i, (group, row) in enumerate(zip(groups, rows, strict=True)):
        diff: tuple[float | None, ...] = (None, None, None, None)
        steps = group.final_steps(view)
        games = _games_of(group)
        if i and games | base_games != base_games:  # scores of two games do not subtract
            listed = ", ".join(sorted(games | base_games))
            row["final_diff_why"] = f"not compared: games {listed}"
        elif i and len(steps | base_steps) > 1:
            listed = ", ".join(str(s) for s in sorted(steps | base_steps))
            row["final_diff_why"] = f"not compared: finals at {listed}"
        elif i:
            finals = group.finals(view)
            diff = (*difference_ci(finals, base), probability_of_improvement(finals, base))
        row.update(zip(DIFF_COLUMNS, diff, strict=True))


def _games_of(group: Group) -> set[str]:
    return {str(run.config.get("env_id", "?")) for run in group.runs}


def hosts_note(runs: Sequence[Run]) -> str:
    """A line for the table where the runs' clocks ran on more than one host (sessions.csv;
    runs from before it have none): their minutes are not comparable as they stand."""
    hosts: dict[str, list[str]] = {}
    for run in runs:
        for host in run.hosts:
            hosts.setdefault(host, []).append(run.path.name)
    if len(hosts) < 2:
        return ""
    listed = "; ".join(f"{host}: {', '.join(names)}" for host, names in hosts.items())
    return (
        f"\nnote: these minutes come from clocks on {len(hosts)} hosts ({listed}); "
        "--steps-per-second puts every run on one rate"
    )


TABLE_COLUMNS = (
    "group", "runs", "seeds", "final_step_min", "final_step_max",
    "final_mean", "final_std", "best", "iqm",
    "final_diff", "final_diff_low", "final_diff_high", "final_p_improvement",
)  # fmt: skip
DIFF_COLUMNS = ("final_diff", "final_diff_low", "final_diff_high", "final_p_improvement")


def threshold_columns(threshold: float) -> tuple[str, ...]:
    """The CSV columns one ``--threshold`` adds."""
    name = threshold_name(threshold)
    return (f"reached_{name}",) + tuple(
        f"{kind}_to_{name}_{stat}"
        for kind in ("steps", "minutes")
        for stat in ("median", "min", "max")
    )


def table_columns(thresholds: Sequence[float] = ()) -> tuple[str, ...]:
    return TABLE_COLUMNS + tuple(c for t in thresholds for c in threshold_columns(t))


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else value


def table_csv(rows: Sequence[dict[str, Any]], thresholds: Sequence[float] = ()) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=table_columns(thresholds), lineterminator="\n")
    writer.writeheader()
    for row in rows:  # (a row's other keys, such as final_diff_why, are for the text table)
        writer.writerow({k: _csv_cell(row[k]) for k in writer.fieldnames if k in row})
    return out.getvalue()


def reach_text(row: dict[str, Any], threshold: float, kind: str) -> str:
    """A printed cell for steps or minutes to ``threshold``: ``median [min-max]`` (just the
    value when min = max), ``not reached by j/n; k did: ...``, ``not reached``, or ``-`` (no
    clock to tell minutes)."""
    name = threshold_name(threshold)
    k, n = (int(v) for v in row[f"reached_{name}"].split("/"))
    if k == 0:
        return "not reached"
    median, low, high = (row[f"{kind}_to_{name}_{s}"] for s in ("median", "min", "max"))
    if median is None:
        return "-"
    fmt = "{:.0f}" if kind == "steps" else "{:.1f}"
    text = fmt.format(median)
    if fmt.format(low) != fmt.format(high):
        text += f" [{fmt.format(low)}-{fmt.format(high)}]"
    return text if k == n else f"not reached by {n - k}/{n}; {k} did: {text}"


def improvement_text(row: dict[str, Any]) -> str:
    """The printed cell of the probability that a run of the group beats one of the first's."""
    p = row.get("final_p_improvement")
    return "-" if p is None else f"{p:.2f}"


def diff_text(row: dict[str, Any]) -> str:
    """The printed cell of a group's final mean minus the first group's, with its interval."""
    if row.get("final_diff") is None:
        return str(row.get("final_diff_why", "-"))
    return f"{row['final_diff']:+.1f} [{row['final_diff_low']:+.1f}, {row['final_diff_high']:+.1f}]"


def table_text(rows: Sequence[dict[str, Any]], thresholds: Sequence[float] = ()) -> str:
    compare = len(rows) > 1  # a column of each group's final mean minus the first group's
    header: tuple[str, ...] = ("group", "runs", "final step", "final mean ± std", "best", "IQM")
    if compare:
        first = rows[0]["group"]
        header += (f"P(final > {first})", f"final - {first} [{CONFIDENCE:.0%} CI]")
    for t in thresholds:
        name = threshold_name(t)
        header += (f"reached {name}", f"steps to {name}", f"minutes to {name}")
    body = [
        (
            r["group"],
            str(r["runs"]),
            str(r["final_step_min"])
            if r["final_step_min"] == r["final_step_max"]
            else f"{r['final_step_min']}-{r['final_step_max']}",
            f"{r['final_mean']:.1f} ± {r['final_std']:.1f}",
            f"{r['best']:.1f}",
            f"{r['iqm']:.1f}",
        )
        + ((improvement_text(r), diff_text(r)) if compare else ())
        + tuple(
            cell
            for t in thresholds
            for cell in (
                r[f"reached_{threshold_name(t)}"],
                reach_text(r, t, "steps"),
                reach_text(r, t, "minutes"),
            )
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in (header, *body)
    ]
    return "\n".join(line.rstrip() for line in lines)
