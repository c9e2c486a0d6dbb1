"""The course project's preset and action set were called ``seed`` until they were named for
what they are: every place that takes those names still takes the old one, and means the same.
(Resuming a run whose files say ``seed``: tests/test_resume.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from atari_dqn.cli import build_parser, main
from atari_dqn.cli.train import resolve_config
from atari_dqn.config import (
    Config,
    ConfigError,
    canonical_settings,
    load_toml,
    preset_config,
    to_toml,
)
from atari_dqn.distributed.sweep_spec import parse_spec


def test_preset_config_takes_the_old_name_and_records_the_new() -> None:
    assert preset_config("seed") == preset_config("course") == Config()
    assert preset_config("seed").preset == "course"


def test_a_config_holds_the_new_names_whatever_it_was_given() -> None:
    config = Config(preset="seed", actions="seed")
    assert (config.preset, config.actions) == ("course", "course")
    assert config == Config()
    assert Config(actions="minimal", preset="nature").actions == "minimal"  # others untouched


def test_canonical_settings_renames_only_the_old_values() -> None:
    old = {"preset": "seed", "actions": "seed", "seed": 3, "lr": 1e-4}
    assert canonical_settings(old) == {
        "preset": "course",
        "actions": "course",
        "seed": 3,
        "lr": 1e-4,
    }
    assert canonical_settings({"actions": "NOOP,FIRE"}) == {"actions": "NOOP,FIRE"}


def test_train_flags_take_the_old_names() -> None:
    args = build_parser().parse_args(["train", "--preset", "seed", "--actions", "seed"])
    assert args.preset == "course"
    config = resolve_config(args)
    assert (config.preset, config.actions) == ("course", "course")


def test_a_toml_file_with_the_old_names(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text('preset = "seed"\nactions = "seed"\nlr = 1e-4\n')
    assert load_toml(path) == {"preset": "seed", "actions": "seed", "lr": 1e-4}
    args = build_parser().parse_args(["train", "--config", str(path)])
    config = resolve_config(args)
    assert (config.preset, config.actions, config.lr) == ("course", "course", 1e-4)
    assert 'preset = "course"' in to_toml(config) and 'actions = "course"' in to_toml(config)


def test_bench_flags_take_the_old_names() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "train", "--seed-loop"]).course_loop
    assert parser.parse_args(["bench", "train", "--course-loop"]).course_loop
    assert not parser.parse_args(["bench", "train"]).course_loop
    assert parser.parse_args(["bench", "memory", "--preset", "seed"]).preset == "course"
    assert parser.parse_args(["bench", "actors", "--preset", "seed"]).preset == "course"


def test_help_names_the_new_ones(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "train", "--help"])
    text = capsys.readouterr().out
    assert "--course-loop" in text and "--seed-loop" not in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "[default: course]" in text and "seed preset" not in text


def test_a_sweep_spec_with_the_old_preset_name() -> None:
    spec = parse_spec('[train]\npreset = "seed"\ntotal_steps = 1000\n', Path("old.toml"))
    (trial,) = spec.trials
    assert trial.config == Config(total_steps=1000)


def test_a_sweep_spec_with_bf16_as_yes_or_no() -> None:
    spec = parse_spec("[grid]\nbf16 = [false, true, 'auto']\n", Path("old.toml"))
    assert [t.config.bf16 for t in spec.trials] == ["off", "on", "auto"]
    argvs = [t.argv(Path("r")) for t in spec.trials]
    assert [argv[argv.index("--bf16") + 1] for argv in argvs] == ["off", "on", "auto"]


def _run(path: Path, config_text: str, scores: list[float]) -> Path:
    path.mkdir(parents=True)
    (path / "config.toml").write_text(config_text)
    lines = [f"{i:3d} {1000 * i:8d} {s:.1f}\n" for i, s in enumerate(scores, start=1)]
    (path / "rewards.txt").write_text("".join(lines))
    return path


def test_plot_groups_an_old_run_with_a_new_one_of_its_settings(tmp_path: Path) -> None:
    from atari_dqn.plot import group_runs, load_run

    new = to_toml(Config(seed=1, eval_every=1000))
    old = to_toml(Config(seed=2, eval_every=1000)).replace('"course"', '"seed"')
    assert 'actions = "seed"' in old and 'preset = "seed"' in old
    runs = [
        load_run(_run(tmp_path / "new", new, [1.0])),
        load_run(_run(tmp_path / "old", old, [3.0])),
    ]
    (group,) = group_runs(runs)
    assert len(group.runs) == 2 and group.label == "preset=course"


def test_bf16_was_yes_or_no_and_true_and_false_still_mean_on_and_off(tmp_path: Path) -> None:
    assert Config(bf16=True).bf16 == "on" and Config(bf16=False) == Config()  # type: ignore[arg-type]
    assert canonical_settings({"bf16": True, "lr": 1e-4}) == {"bf16": "on", "lr": 1e-4}
    path = tmp_path / "old.toml"
    path.write_text("bf16 = true\n")
    assert load_toml(path) == {"bf16": "on"}
    path.write_text("lr = true\n")  # only a setting that was yes/no takes a yes/no
    with pytest.raises(ConfigError, match="config key 'lr' must be float, got True"):
        load_toml(path)


@pytest.mark.parametrize(
    ("flags", "bf16"),
    [([], "off"), (["--bf16"], "on"), (["--bf16", "auto"], "auto"), (["--bf16", "off"], "off"),
     (["--bf16", "--no-bf16"], "off"), (["--preset", "laptop", "--no-bf16"], "off"),
     (["--preset", "laptop"], "auto"), (["--preset", "laptop-v1"], "off")],
)  # fmt: skip
def test_bf16_flag_alone_is_on_and_takes_auto(flags: list[str], bf16: str) -> None:
    args = build_parser().parse_args(["train", *flags, "--seed", "2"])
    assert resolve_config(args).bf16 == bf16


def test_a_bf16_value_that_is_none_of_them_is_one_line_and_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--bf16", "maybe", "--out", "never"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--bf16" in err and "auto" in err and len(err.strip().splitlines()) == 1, err
    assert not Path("never").exists()
