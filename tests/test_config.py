"""Config: defaults are the course project's, TOML round trip, validation messages."""

from __future__ import annotations

import pytest

from atari_dqn.config import Config, ConfigError, load_toml, preset_config, to_toml


def test_course_defaults() -> None:
    c = preset_config("course")
    assert (c.buffer_size, c.batch_size, c.lr, c.adam_eps, c.gamma) == (
        100_000, 32, 6.25e-5, 1.5e-4, 0.99
    )  # fmt: skip
    assert (c.warmup_steps, c.update_every, c.target_update, c.eval_every, c.eval_games) == (
        50_000, 4, 10_000, 100_000, 3
    )  # fmt: skip
    assert (c.eps_start, c.eps_end, c.eps_decay, c.grad_clip) == (1.0, 0.1, 1_000_000, 1.0)
    assert c.env_id == "BreakoutNoFrameskip-v4" and c.actions == "course"
    assert c == Config() and c.preset == "course"


def test_replay_ratio_is_transitions_trained_per_agent_step() -> None:
    assert Config().replay_ratio == 8.0  # batch 32, an update every 4 steps
    assert Config(batch_size=32, update_every=1).replay_ratio == 32.0
    assert Config(batch_size=64, update_every=8).replay_ratio == 8.0
    assert "replay_ratio" not in to_toml(Config())  # derived: not a setting of its own


def test_toml_round_trip(tmp_path) -> None:
    c = Config(seed=3, lr=1e-4, env_id="ALE/Pong-v5", actions="NOOP,FIRE")
    path = tmp_path / "c.toml"
    path.write_text(to_toml(c))
    assert Config(**load_toml(path)) == c


def test_run_tables_follow_the_settings_and_are_not_settings(tmp_path) -> None:
    c = Config(seed=3)
    path = tmp_path / "config.toml"
    path.write_text(to_toml(c, {"apex": {"actors": 4, "envs_per_actor": 2}}))
    assert path.read_text().endswith("\n[apex]\nactors = 4\nenvs_per_actor = 2\n")
    assert Config(**load_toml(path)) == c  # --config and --resume read past the table
    with pytest.raises(ValueError, match="not one of the run tables"):
        to_toml(c, {"ray": {"cpus": 1}})
    path.write_text("[ray]\ncpus = 1\n")  # any other table is still an unknown key
    with pytest.raises(ConfigError, match="unknown key 'ray'"):
        load_toml(path)


def test_toml_round_trip_of_the_rainbow_head(tmp_path) -> None:
    c = preset_config("rainbow").replace(atoms=21, v_min=-5.0, v_max=7.5, noisy_sigma0=0.25)
    path = tmp_path / "c.toml"
    path.write_text(to_toml(c))
    text = path.read_text()
    assert "distributional = true" in text and "noisy_sigma0 = 0.25" in text
    assert Config(**load_toml(path)) == c
    path.write_text("distributional = true\natoms = 11\nv-min = -1\nnoisy = true\n")
    assert load_toml(path) == {"distributional": True, "atoms": 11, "v_min": -1.0, "noisy": True}


def test_toml_round_trip_of_the_sample_efficiency_options(tmp_path) -> None:
    c = Config(layer_norm=True, augment="shift", double=True, one_pass_double=True)
    path = tmp_path / "c.toml"
    path.write_text(to_toml(c))
    text = path.read_text()
    assert 'augment = "shift"' in text and "layer_norm = true" in text
    assert Config(**load_toml(path)) == c
    # a file from before these options: their defaults, the old behaviour
    path.write_text("double = true\n")
    old = Config(**load_toml(path))
    assert (old.layer_norm, old.augment, old.one_pass_double) == (False, "none", False)


def test_toml_accepts_dashes_and_ints_for_floats(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("total-steps = 1000\nlr = 1\n")
    assert load_toml(path) == {"total_steps": 1000, "lr": 1.0}


@pytest.mark.parametrize(
    "text, message",
    [
        ("bogus = 1\n", "unknown key 'bogus'"),
        ('total_steps = "many"\n', "must be int"),
        ("total_steps = [\n", "not valid TOML"),
    ],
)
def test_toml_errors(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_toml(path)


def test_missing_toml() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_toml("/nonexistent/x.toml")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"total_steps": 0}, "--total-steps must be positive"),
        ({"batch_size": -1}, "--batch-size must be positive"),
        ({"batch_size": 64, "buffer_size": 32}, "larger than --buffer-size"),
        ({"eps_start": 1.5}, r"--eps-start must be in \[0, 1\]"),
        ({"eps_end": -0.1}, r"--eps-end must be in \[0, 1\]"),
        ({"eval_epsilon": 2.0}, r"--eval-epsilon must be in \[0, 1\]"),
        ({"warmup_steps": -5}, "--warmup-steps must be >= 0"),
        ({"lr": 0.0}, "--lr must be a positive number"),
        ({"device": "tpu"}, "--device must be"),
        ({"atoms": 1}, "--atoms must be between 2 and 1001"),
        ({"v_min": 0.0, "v_max": 0.0}, "--v-min must be smaller than --v-max"),
        ({"v_max": float("inf")}, "--v-min and --v-max must be finite"),
        ({"noisy_sigma0": 0.0}, "--noisy-sigma0 must be a positive number"),
        ({"noisy_sigma0": float("nan")}, "--noisy-sigma0 must be a positive number"),
        ({"augment": "crop"}, "--augment must be one of none, shift, got 'crop'"),
        ({"replay": "fifo"}, "--replay must be one of uniform, prioritized"),
    ],
)
def test_validation(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**changes).validate()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"sticky_actions": 1.5}, r"--sticky-actions must be in \[0, 1\] or -1, got 1.5"),
        ({"alpha": -0.5}, r"--alpha must be in \[0, 1\], got -0.5"),
        ({"num_envs": 0}, "--num-envs must be between 1 and 1024, got 0"),
        ({"checkpoint_every": -1}, "--checkpoint-every must be >= 0, got -1"),
        ({"priority_eps": float("nan")}, r"--priority-eps must be in \(0, 1\]"),
        ({"gamma": float("nan")}, r"--gamma must be in \[0, 1\]"),
    ],
)
def test_validation_of_bounds_beside_the_fields(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**changes).validate()


def test_every_bounded_field_refuses_a_value_past_its_bounds_and_keeps_its_unset_value() -> None:
    from dataclasses import fields

    Config(sticky_actions=-1.0).validate()  # -1: the env id's default
    checked = 0
    for f in fields(Config):
        meta, default = f.metadata, f.default
        step = 1 if isinstance(default, int) else 0.5
        if meta.get("positive"):
            bad = [type(default)(0)] + ([float("nan"), float("inf")] if step == 0.5 else [])
        else:
            bad = [meta["min"] - step] if "min" in meta else []
            bad += [meta["max"] + step] if "max" in meta else []
        for value in bad:
            with pytest.raises(ConfigError, match=f"^--{f.name.replace('_', '-')} must be"):
                Config(**{f.name: value}).validate()
            checked += 1
    assert checked > 30


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("nope")


def test_rainbow_preset_has_all_six_parts_with_the_papers_settings() -> None:
    c = preset_config("rainbow")
    c.validate()
    assert (c.double, c.dueling, c.replay, c.n_step, c.distributional, c.noisy) == (
        True, True, "prioritized", 3, True, True)  # fmt: skip
    assert (c.atoms, c.v_min, c.v_max, c.noisy_sigma0) == (51, -10.0, 10.0, 0.5)
    assert (c.lr, c.adam_eps, c.target_update, c.warmup_steps) == (6.25e-5, 1.5e-4, 8000, 20_000)
    assert (c.alpha, c.beta0, c.beta_steps) == (0.5, 0.4, 0)
    assert c.eval_epsilon == 0.05  # evaluation keeps its epsilon
    # epsilon, as build.build_learner schedules it: 1 (random play) through warm-up, 0 from
    # the first step after it.
    from atari_dqn.schedules import LinearSchedule

    eps = LinearSchedule(c.eps_start, c.eps_end, c.eps_decay, begin=c.warmup_steps)
    assert [eps(s) for s in (0, 20_000, 20_001, 1_000_000)] == [1.0, 1.0, 0.0, 0.0]


def test_every_value_of_a_sourced_preset_says_where_it_comes_from() -> None:
    from atari_dqn.config import PRESETS, Preset

    sourced = {name: p for name, p in PRESETS.items() if p.sources}
    assert set(sourced) >= {"laptop", "rainbow"}
    for name, preset in sourced.items():
        assert set(preset.sources) == set(preset.changes), name
    with pytest.raises(ValueError, match="does not set"):
        Preset("a preset", {"lr": 1e-4}, {"gamma": "a source of a value it does not set"})
