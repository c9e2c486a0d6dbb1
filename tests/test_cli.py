"""End to end through the command line: tiny runs, evaluation, and every bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from atari_dqn.cli import main
from atari_dqn.config import PRESETS
from tiny import TINY_RUN, weights

TINY = [*TINY_RUN, "--quiet"]


def train(out: Path, *extra: str) -> int:
    return main(["train", *TINY, "--out", str(out), *extra])


def test_train_writes_rewards_in_the_course_projects_format_and_models(tiny_run: Path) -> None:
    lines = (tiny_run / "rewards.txt").read_text().splitlines(keepends=True)
    assert len(lines) == 2
    for index, (line, step) in enumerate(zip(lines, (120, 240), strict=True), start=1):
        score = float(line.split()[2])
        assert line == f"{index:3d} {step:8d} {score:.1f}\n"
    assert [p.name for p in sorted(tiny_run.glob("model_[0-9]*"))] == [
        "model_001.safetensors",
        "model_002.safetensors",
    ]
    config = (tiny_run / "config.toml").read_text()
    assert "total_steps = 240" in config and 'preset = "course"' in config


def test_same_seed_same_rewards_and_same_weights(tiny_run: Path, tmp_path: Path) -> None:
    assert train(tmp_path / "b", "--seed", "1") == 0
    assert (tmp_path / "b" / "rewards.txt").read_text() == (tiny_run / "rewards.txt").read_text()
    for name in ("model_001.safetensors", "model_002.safetensors"):
        assert weights(tmp_path / "b" / name) == weights(tiny_run / name)


def test_other_seed_other_weights(tiny_run: Path, tmp_path: Path) -> None:
    assert train(tmp_path / "c", "--seed", "2") == 0
    a = weights(tiny_run / "model_002.safetensors")
    assert weights(tmp_path / "c" / "model_002.safetensors") != a


def test_evaluate_loads_the_model_and_writes_frames(tiny_run: Path, tmp_path: Path, capsys) -> None:
    frames = tmp_path / "frames"
    code = main(
        [
            "evaluate",
            str(tiny_run),
            "--episodes",
            "2",
            "--max-frames",
            "200",
            "--frames",
            str(frames),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "model_002.safetensors" in out
    assert re.search(r"mean -?\d+\.\d ± \d+\.\d over 2 games", out)
    # 200 frames cap = 50 agent steps per game at most; first PNG is the reset frame.
    for game in ("game_00", "game_01"):
        pngs = sorted((frames / game).glob("*.png"))
        assert 2 <= len(pngs) <= 51
        assert pngs[0].name == "000000.png"
    import imageio.v3 as iio

    assert iio.imread(pngs[0]).shape == (210, 160, 3)


def test_restore_starts_from_the_given_weights(tiny_run: Path, tmp_path: Path) -> None:
    from atari_dqn.artifacts import load_model

    src = tiny_run / "model_002.safetensors"
    # No warm-up learning: 0 updates happen with total < warmup, so the model is the restored one.
    code = main(
        ["train", *TINY, "--warmup-steps", "10000", "--restore", str(src),
         "--out", str(tmp_path / "r")]
    )  # fmt: skip
    assert code == 0
    a, _ = load_model(src)
    b, _ = load_model(tmp_path / "r" / "model_002.safetensors")
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_help_reads_well() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "atari_dqn", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--env-id", "--preset", "--config", "--out", "--force", "--seed", "--device",
        "--total-steps", "--warmup-steps", "--update-every", "--target-update",
        "--batch-size", "--buffer-size", "--lr", "--gamma", "--eps-start", "--eps-end",
        "--eps-decay", "--eval-every", "--eval-games", "--eval-epsilon", "--restore", "--quiet",
    ):  # fmt: skip
        assert flag in out, flag
    assert "agent steps" in out
    top = subprocess.run(
        [sys.executable, "-m", "atari_dqn", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "train" in top and "evaluate" in top


def test_no_help_text_shows_a_doubled_percent_sign() -> None:
    # argparse %-formats arguments' help but not a description: "95%%" there is printed as is.
    import argparse

    from atari_dqn.cli import build_parser

    def walk(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, str]]:
        found = [(name, parser.format_help())]
        for sub, child in getattr(parser, "commands", {}).items():  # Parser.commands
            found += walk(child, f"{name} {sub}")
        return found

    helps = walk(build_parser(), "atari-dqn")
    assert len(helps) > 10  # every command and bench's subcommands
    assert [name for name, text in helps if "%%" in text] == []


@pytest.mark.slow
def test_config_file_and_flag_override(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("total_steps = 160\neval_every = 80\nseed = 5\n")
    out = tmp_path / "run"
    assert main(["train", *TINY, "--config", str(cfg), "--seed", "6", "--out", str(out)]) == 0
    saved = (out / "config.toml").read_text()
    # TINY's --total-steps flag beats the file; the file's seed loses to --seed 6.
    assert "total_steps = 240" in saved and "seed = 6" in saved and "eval_every = 120" in saved


# ---------------------------------------------------------------------- bad input
def _bad(args: list[str], message: str, capsys) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--env-id", "Nope-v0"], "unknown environment id 'Nope-v0'"),
        (["--total-steps", "0"], "--total-steps must be positive"),
        (["--warmup-steps", "-1"], "--warmup-steps must be >= 0"),
        (["--checkpoint-every", "-100"], "--checkpoint-every must be >= 0, got -100"),
        (["--batch-size", "600"], "larger than --buffer-size"),
        (["--eps-start", "1.5"], "--eps-start must be in [0, 1]"),
        (["--eval-epsilon", "-0.1"], "--eval-epsilon must be in [0, 1]"),
        (["--restore", "/nonexistent/model.safetensors"], "no such model file"),
        (["--actions", "NOOP,JUMP"], "JUMP"),
        (["--config", "/nonexistent.toml"], "config file not found"),
        (["--distributional", "--atoms", "1"], "--atoms must be between 2 and 1001, got 1"),
        (["--v-min", "2", "--v-max", "2"], "--v-min must be smaller than --v-max"),
        (["--v-min", "3", "--v-max", "-3"], "--v-min must be smaller than --v-max"),
        (["--noisy", "--noisy-sigma0", "0"], "--noisy-sigma0 must be a positive number"),
        (["--noisy-sigma0", "-0.5"], "--noisy-sigma0 must be a positive number"),
    ],
)
def test_bad_train_input(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    out = tmp_path / "never"
    _bad(["train", *TINY, "--out", str(out), *extra], message, capsys)
    assert not out.exists()


def test_argparse_errors_are_one_line_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--total-steps", "lots"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid int value" in err and len(err.strip().splitlines()) == 1


def test_existing_run_is_refused_and_untouched(tiny_run: Path, capsys) -> None:
    def files() -> dict[Path, bytes]:  # (the replay's checkpoint chunks are in a subdirectory)
        return {p.relative_to(tiny_run): p.read_bytes() for p in tiny_run.rglob("*") if p.is_file()}

    before = files()
    _bad(["train", *TINY, "--out", str(tiny_run)], "already holds a run", capsys)
    assert files() == before


def test_force_replaces_only_run_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "rewards.txt").write_text("old\n")
    assert train(out, "--force", "--total-steps", "120") == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "rewards.txt").read_text().count("\n") == 1


@pytest.mark.parametrize("kind", ["garbage", "pickle", "truncated"])
def test_corrupt_or_malicious_model_is_refused(
    tiny_run: Path, tmp_path: Path, capsys, kind
) -> None:
    bad = tmp_path / "bad.safetensors"
    marker = tmp_path / "pwned"
    if kind == "garbage":
        bad.write_bytes(b"\x00\x01not a model at all")
    elif kind == "truncated":
        data = (tiny_run / "model_001.safetensors").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:

        class Evil:
            def __reduce__(self):
                return (Path.touch, (marker,))

        torch.save({"x": Evil()}, bad)
    _bad(["evaluate", str(bad)], "is not a valid atari-dqn model file", capsys)
    _bad(
        ["train", *TINY, "--restore", str(bad), "--out", str(tmp_path / "o")], "not a valid", capsys
    )
    assert not marker.exists()


def test_model_with_other_action_count_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "minimal"
    assert train(run, "--actions", "minimal", "--total-steps", "120") == 0
    _bad(
        [
            "train",
            *TINY,
            "--restore",
            str(run / "model_001.safetensors"),
            "--out",
            str(tmp_path / "x"),
        ],
        "has 4 actions",
        capsys,
    )


def test_evaluate_bad_input(tmp_path: Path, capsys) -> None:
    _bad(["evaluate", str(tmp_path / "missing")], "no such model file or run directory", capsys)
    _bad(["evaluate", str(tmp_path)], "no model files", capsys)
    _bad(["evaluate", str(tmp_path), "--episodes", "0"], "--episodes must be positive", capsys)


@pytest.mark.slow
@pytest.mark.parametrize("preset", [name for name in PRESETS if name != "course"])
def test_every_preset_trains_end_to_end(preset: str, tmp_path: Path) -> None:
    out = tmp_path / preset
    # TINY overrides the run's length and sizes; the preset keeps its learning settings
    # (PQN's: 4 envs x 8-step rollouts in place of 128 x 32, the sizes of a tiny run).
    sizes = ["--num-envs", "4", "--rollout-steps", "8", "--minibatches", "4"]
    extra = sizes if preset == "pqn" else []
    assert train(out, "--preset", preset, "--total-steps", "120", *extra) == 0
    assert len((out / "rewards.txt").read_text().splitlines()) == 1
    assert f'preset = "{preset}"' in (out / "config.toml").read_text()


@pytest.mark.slow
def test_bf16_run_trains_end_to_end_and_records_it(tmp_path: Path) -> None:
    out = tmp_path / "bf16"
    assert train(out, "--bf16", "--double", "--total-steps", "120") == 0
    assert len((out / "rewards.txt").read_text().splitlines()) == 1
    assert 'bf16 = "on"' in (out / "config.toml").read_text()


@pytest.mark.slow
def test_bf16_auto_says_what_it_chose_on_this_host(tmp_path: Path, capsys) -> None:
    from atari_dqn.host import host_info

    out = tmp_path / "auto"
    assert train(out, "--bf16", "auto", "--total-steps", "120") == 0
    chosen = "bf16" if host_info()["bf16_native"] else "float32"
    assert f"--bf16 auto: the update runs in {chosen}\n" in capsys.readouterr().out
    assert 'bf16 = "auto"' in (out / "config.toml").read_text()  # a resume elsewhere decides anew


def test_dueling_model_evaluates_without_flags(tmp_path: Path, capsys) -> None:
    from atari_dqn.artifacts import load_model

    out = tmp_path / "duel"
    assert train(out, "--dueling", "--double", "--n-step", "3", "--total-steps", "120") == 0
    network, meta = load_model(out / "model_001.safetensors")
    assert network.dueling and meta["dueling"] == "true"
    capsys.readouterr()
    assert main(["evaluate", str(out), "--episodes", "1", "--max-frames", "200"]) == 0
    assert "mean" in capsys.readouterr().out


def test_presets_command_lists_what_each_sets(capsys) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f"{name}:" in out
    assert "--n-step 3" in out and "--replay prioritized" in out
    # rainbow: every value with its source beside it.
    rainbow = out.split("rainbow: ", 1)[1].splitlines()[1:]
    assert len(rainbow) == len(PRESETS["rainbow"].changes)
    assert all("# " in line for line in rainbow), rainbow
    for text in ("--atoms 51", "--v-min -10.0", "--noisy-sigma0 0.5", "--eps-end 0.0"):
        assert any(line.strip().startswith(text) for line in rainbow), text


@pytest.mark.slow
def test_rainbow_model_evaluates_without_flags_with_its_head(tmp_path: Path, capsys) -> None:
    from atari_dqn.artifacts import load_model

    out = tmp_path / "rainbow"
    assert train(out, "--preset", "rainbow", "--atoms", "11", "--total-steps", "120") == 0
    network, meta = load_model(out / "model_001.safetensors")
    assert (network.distributional, network.atoms, network.noisy, network.dueling) == (
        True, 11, True, True)  # fmt: skip
    assert (meta["v_min"], meta["v_max"], meta["noisy_sigma0"]) == ("-10.0", "10.0", "0.5")
    capsys.readouterr()
    args = ["evaluate", str(out), "--episodes", "1", "--max-frames", "200", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0  # mean weights: the same games again, not new noise
    assert json.loads(capsys.readouterr().out)["scores"] == first["scores"]


def test_run_files_honour_the_umask(tiny_run: Path, tmp_path: Path) -> None:
    import os

    from atari_dqn.artifacts import atomic_write_text

    mask = os.umask(0o022)
    os.umask(mask)
    files = [p for p in tiny_run.rglob("*") if p.is_file()]  # the replay's chunks too
    assert any(p.parent.name == "checkpoint_replay" for p in files)
    for path in files:  # written under the test process's umask
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path.name
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "shared.txt", "x\n")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o640


def test_latest_and_best_models(tiny_run: Path, capsys) -> None:
    from safetensors import safe_open

    def meta(name: str) -> dict[str, str]:
        with safe_open(str(tiny_run / name), framework="pt") as fh:
            return fh.metadata()

    # The run ends at 240 with a checkpoint there: latest is the final network.
    assert meta("model_latest.safetensors")["step"] == "240"
    assert weights(tiny_run / "model_latest.safetensors") == weights(
        tiny_run / "model_002.safetensors"
    )  # (the last evaluation is at the last step)
    scores = [float(ln.split()[2]) for ln in (tiny_run / "rewards.txt").read_text().splitlines()]
    best = max(range(2), key=lambda i: (scores[i], -i))  # the first of equal bests
    assert meta("model_best.safetensors")["step"] == str(120 * (best + 1))
    assert float(meta("model_best.safetensors")["score"]) == scores[best]
    assert weights(tiny_run / "model_best.safetensors") == weights(
        tiny_run / f"model_{best + 1:03d}.safetensors"
    )
    # Every model file records the env settings evaluation needs.
    m = meta("model_001.safetensors")
    assert (m["noop_max"], m["frame_skip"], m["sticky_actions"]) == ("30", "4", "-1.0")
    assert m["eval_max_frames"] == "600"
    for which, name in (("latest", "model_latest"), ("best", "model_best"), ("1", "model_001")):
        args = ["evaluate", str(tiny_run), "--model", which, "--episodes", "1", "--json"]
        assert main(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["model"].endswith(f"{name}.safetensors")
        assert out["env"]["eval_max_frames"] == 600  # the run's cap, not 108000
        assert len(out["scores"]) == 1 and out["mean"] == out["scores"][0]
        assert len(out["lengths"]) == 1 and 0 < out["lengths"][0] <= 600 // 4  # agent steps
    _bad(["evaluate", str(tiny_run), "--model", "7"], "no model of evaluation 7", capsys)
    _bad(["evaluate", str(tiny_run), "--model", "x"], "expected latest, best or", capsys)


def test_evaluate_uses_the_runs_env_and_notes_overrides(tiny_run: Path, capsys) -> None:
    assert main(["evaluate", str(tiny_run), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "model_002.safetensors" in out  # the newest evaluation's model, said
    assert "env: noop_max 30, frame_skip 4, sticky_actions -1" in out and "max frames 600" in out
    assert "note:" not in out
    args = ["evaluate", str(tiny_run), "--episodes", "1", "--sticky-actions", "0.25"]
    assert main([*args, "--max-frames", "400"]) == 0
    out = capsys.readouterr().out
    assert "note: --sticky-actions 0.25 differs from the run's -1" in out
    assert "note: --max-frames 400 differs from the run's 600" in out
    _bad(["evaluate", str(tiny_run), "--sticky-actions", "2"], "--sticky-actions must be", capsys)


def test_unknown_flags_and_keys_suggest_the_known_one(tmp_path: Path, capsys) -> None:
    for args, hint in (
        (["train", "--totl-steps", "300"], "did you mean --total-steps?"),
        (["train", "--learning-rate", "1e-4"], "did you mean --lr?"),
        (["bench", "train", "--stepz", "3"], "did you mean --steps?"),
        (["evaluate", "x", "--episodez", "3"], "did you mean --episodes?"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "unrecognized arguments" in err and hint in err, err
        assert len(err.strip().splitlines()) == 1
    config = tmp_path / "c.toml"
    config.write_text("learning_rate = 1e-4\n")
    _bad(["train", "--config", str(config)], "did you mean 'lr'?", capsys)


def test_toml_counts_may_be_written_as_floats(tmp_path: Path, capsys) -> None:
    from atari_dqn.config import load_toml

    config = tmp_path / "c.toml"
    config.write_text("total_steps = 1e6\nwarmup_steps = 5e4\n")
    assert load_toml(config) == {"total_steps": 1_000_000, "warmup_steps": 50_000}
    assert isinstance(load_toml(config)["total_steps"], int)
    config.write_text("total_steps = 1500.5\n")  # not a whole number of steps
    _bad(["train", "--config", str(config), "--out", str(tmp_path / "r")], "must be int", capsys)
    assert not (tmp_path / "r").exists()


def test_device_mps_is_known_and_refused_where_absent(tmp_path: Path, capsys) -> None:
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")  # the refusal is what a machine without it shows
    _bad(["train", "--device", "mps", "--out", str(tmp_path / "r")], "--device mps:", capsys)
    assert not (tmp_path / "r").exists()
