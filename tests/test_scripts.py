"""The analysis scripts under scripts/ run on a real (tiny) run directory."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from atari_dqn.cli import main
from tiny import TINY_RUN

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def run_script(name: str, args: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(SCRIPTS / name), run_name="__main__")
    return int(exc.value.code or 0)


@pytest.mark.slow
def test_priority_staleness_reads_a_prioritized_runs_checkpoint(tmp_path, monkeypatch, capsys):
    run = tmp_path / "per"
    flags = [*TINY_RUN, "--replay", "prioritized", "--n-step", "3", "--double", "--quiet"]
    assert main(["train", *flags, "--num-envs", "2", "--out", str(run)]) == 0
    capsys.readouterr()
    assert run_script("priority_staleness.py", [str(run), "--samples", "200"], monkeypatch) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{run} at step 240: 200 of ")
    rows = [line.split("|")[1:-1] for line in out[3:] if line.startswith("|")]
    assert out[-1].startswith("the ") and "(10% under uniform replay)" in out[-1]
    assert len(rows) == 6 and rows[-1][0].strip() == "all"
    assert sum(int(r[1]) for r in rows[:-1]) == 200  # every sampled slot has an age bucket
    stored = sum(float(r[3].strip(" %")) for r in rows[:-1] if r[3].strip() != "-")
    assert stored == pytest.approx(100, abs=0.5)


@pytest.mark.slow
def test_priority_staleness_refuses_a_uniform_run(tmp_path, monkeypatch, capsys):
    run = tmp_path / "uni"
    assert main(["train", *TINY_RUN, "--quiet", "--out", str(run)]) == 0
    assert run_script("priority_staleness.py", [str(run)], monkeypatch) == 2
    assert "not a prioritized run" in capsys.readouterr().err
