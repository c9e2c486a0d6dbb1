"""``atari-dqn bench``: bad input is one line on stderr and exit status 2, before any work."""

from __future__ import annotations

import pytest

from atari_dqn.cli import main


@pytest.mark.parametrize(
    "args, message",
    [
        (["replay", "--capacity", "0"], "--capacity must be positive"),
        (["replay", "--batch", "-3"], "--batch must be positive"),
        (["replay", "--capacity", "100", "--batch", "64"], "too small for --batch"),
        (["train", "--steps", "0"], "--steps must be positive"),
        (["train", "--warmup", "-1"], "--warmup must be >= 0"),
        (["train", "--replay", "uniform,fifo"], "unknown replay kind 'fifo'"),
        (["train", "--replay", ","], "--replay needs at least one of"),
        (["train", "--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
        (["train", "--threads", "1,0"], "--threads values must be positive, got 0"),
        (["train", "--threads", "1,x"], "--threads expects integers like 1,8,16"),
        (["train", "--run", "/no/such/run"], "--run /no/such/run: not a run directory"),
    ],
)
def test_bench_bad_input_is_one_line_exit_2(args: list[str], message: str, capsys) -> None:
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_bench_needs_a_subcommand(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_run_row_is_named_by_its_directory_or_its_config_file(tmp_path) -> None:
    """Two config files side by side get two names; a run's config.toml is named by its run."""
    from atari_dqn.cli.bench import bench_run
    from atari_dqn.config import Config, to_toml

    run = tmp_path / "my-run"
    run.mkdir()
    for file in (run / "config.toml", tmp_path / "winner.toml", tmp_path / "winner-compile.toml"):
        file.write_text(to_toml(Config(lr=2e-4)))
    named = [bench_run(p)[0] for p in (run, run / "config.toml", tmp_path / "winner.toml",
                                       tmp_path / "winner-compile.toml")]  # fmt: skip
    assert named == ["my-run", "my-run", "winner", "winner-compile"]
    assert bench_run(tmp_path / "winner.toml")[1].lr == 2e-4
