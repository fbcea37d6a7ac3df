"""Settings of ``tcdesign run``: TOML tables, flag overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcdesign.pipeline.run import settings_conflicts
from tcdesign.pipeline.settings import (
    DEFAULT_N,
    RUN_SCREEN_DEFAULTS,
    make_run_settings,
    read_run_toml,
)


def test_defaults() -> None:
    settings = make_run_settings()
    assert settings.run.n == DEFAULT_N
    assert settings.run.methods == ("cdvae",)
    assert settings.run.verify == 0
    assert settings.generate.optimize_tc
    assert settings.screen == RUN_SCREEN_DEFAULTS
    assert settings.verify.preset == "coarse"


def test_toml_tables_and_flags_override_them(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        '[run]\nn = 7\nmethods = ["cdvae", "substitution"]\nverify = 2\n'
        "[generate]\nsteps_per_level = 3\n"
        "[screen]\ntc_min = 4.0\n"
        '[verify]\npreset = "standard"\nnp = 4\nmu_star = 0.13\n'
    )
    config = read_run_toml(path)
    settings = make_run_settings(config, run={"n": 9, "seed": None}, screen={"tc_min": None})
    assert settings.run.n == 9  # the flag wins
    assert settings.run.seed == 0  # None means "not given"
    assert settings.run.methods == ("cdvae", "substitution")
    assert settings.generate.steps_per_level == 3
    assert settings.screen == {**RUN_SCREEN_DEFAULTS, "tc_min": 4.0}
    assert settings.verify.preset == "standard"
    assert settings.verify.overrides == {"np": 4, "mu_star": 0.13}


def test_both_methods_shorthand() -> None:
    assert make_run_settings({"run": {"methods": "both"}}).run.methods == (
        "cdvae",
        "substitution",
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"runn": {}}, "unknown table"),
        ({"run": {"nn": 3}}, "unknown setting"),
        ({"run": {"methods": ["gan"]}}, "unknown method"),
        ({"run": {"n": 0}}, "at least 1"),
        ({"run": {"verify": -1}}, "0 or more"),
        ({"generate": {"steps": 3}}, "unknown setting"),
        ({"generate": {"composition": "random"}}, "unknown composition"),
        ({"generate": {"opt_start": "val"}}, "unknown opt_start"),
        ({"verify": {"ecut": 3}}, "unknown verify setting"),
        ({"verify": {"preset": "fine"}}, "unknown preset"),
        ({"run": 3}, "must be a table"),
    ],
)
def test_bad_settings_name_the_key(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_run_settings(config, where="my.toml")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"run": {"n": 8.5}}, r"\[run\]: n must be a whole number, got 8.5"),
        ({"run": {"seed": "x"}}, "seed must be a whole number, got 'x'"),
        ({"run": {"report": "no"}}, "report must be true or false"),
        ({"run": {"verify": True}}, "verify must be a whole number"),
        ({"run": {"methods": 5}}, "methods must be a method name"),
        ({"generate": {"optimize_tc": "false"}}, "optimize_tc must be true or false"),
        ({"generate": {"steps_per_level": 2.5}}, "steps_per_level must be a whole number"),
        ({"generate": {"steps_per_level": 0}}, "steps_per_level must be at least 1"),
        ({"generate": {"opt_steps": 0}}, "opt_steps must be at least 1"),
        ({"generate": {"step_lr": -1e-4}}, "step_lr must be a finite number above 0"),
        ({"generate": {"target_tc": "20"}}, "target_tc must be a number"),
        ({"generate": {"model": 3}}, "model must be a string"),
        ({"verify": {"workers": "2"}}, "workers must be a whole number"),
        ({"verify": {"mu_star": "0.1"}}, "mu_star must be a number"),
        ({"verify": {"np": 0}}, "np must be at least 1"),
        ({"verify": {"pseudopotentials": ["Nb.upf"]}}, "pseudopotentials must be a table"),
        ({"screen": {"tc_min": "5"}}, r"\[screen\]: tc_min must be a finite number"),
    ],
)
def test_wrong_types_name_the_key_and_value(config: dict, message: str) -> None:
    """A TOML value of the wrong type is a ValueError (exit 2) before any work; it used to be
    accepted and crash a stage later (exit 1) or, for a string "false", silently mean true."""
    with pytest.raises(ValueError, match=message):
        make_run_settings(config, where="my.toml")


def test_right_types_pass() -> None:
    settings = make_run_settings(
        {
            "run": {"n": 3, "report": False, "methods": ["substitution"]},
            "generate": {"opt_lr": 1, "target_tc": 20.0, "levels": 10},
            "verify": {"mu_star": 0.12, "relax": False, "pseudopotentials": {"Nb": "Nb.upf"}},
        }
    )
    assert settings.generate.opt_lr == 1 and settings.verify.overrides["relax"] is False


def test_unreadable_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[run\nn = ")
    with pytest.raises(ValueError, match="bad.toml"):
        read_run_toml(path)


def test_resume_conflicts_ignore_growing_n_but_not_a_new_seed() -> None:
    old = make_run_settings().as_dict()
    assert settings_conflicts(old, make_run_settings(run={"n": 500, "verify": 3}).as_dict()) == []
    conflicts = settings_conflicts(old, make_run_settings(run={"seed": 1}).as_dict())
    assert conflicts == ["run.seed: 0 -> 1"]
    # screening rules and references are reapplied on resume; relaxation settings are not
    changed = make_run_settings(screen={"tc_min": 3.0, "eform_scale": "mp"}).as_dict()
    assert settings_conflicts(old, changed) == []
    changed = make_run_settings(screen={"fmax": 0.1}).as_dict()
    assert settings_conflicts(old, changed) == ["screen.fmax: None -> 0.1"]
    # the optimisation's step size matters only when the optimisation is on
    plain = make_run_settings(generate={"optimize_tc": False}).as_dict()
    changed = make_run_settings(generate={"optimize_tc": False, "opt_lr": 0.02}).as_dict()
    assert settings_conflicts(plain, changed) == []
    optimized = make_run_settings(generate={"optimize_tc": True}).as_dict()
    changed = make_run_settings(generate={"optimize_tc": True, "opt_lr": 0.02}).as_dict()
    assert settings_conflicts(optimized, changed) == ["generate.opt_lr: 0.005 -> 0.02"]


def test_a_new_target_tc_conflicts_also_without_optimize_tc() -> None:
    """generate optimises towards target_tc even with optimize_tc false; a rerun with another
    target_tc was not a conflict, so crystals aimed at two targets mixed in one folder."""
    old = make_run_settings(generate={"optimize_tc": False, "target_tc": 20.0}).as_dict()
    new = make_run_settings(generate={"optimize_tc": False, "target_tc": 40.0}).as_dict()
    assert settings_conflicts(old, new) == ["generate.target_tc: 20.0 -> 40.0"]
    plain = make_run_settings(generate={"optimize_tc": False}).as_dict()
    assert settings_conflicts(plain, old) == ["generate.target_tc: None -> 20.0"]


def test_generate_settings_do_not_bind_a_folder_without_cdvae_output() -> None:
    """A substitution-only run made no CDVAE crystals, so its folder can take other generate
    settings (and CDVAE added as a method); once CDVAE has run, they bind it again."""
    substitution = {"methods": ("substitution",)}
    old = make_run_settings(run=substitution).as_dict()
    new = make_run_settings(run=substitution, generate={"steps_per_level": 20}).as_dict()
    assert settings_conflicts(old, new) == []
    both = make_run_settings(
        run={"methods": ("substitution", "cdvae")}, generate={"steps_per_level": 20}
    ).as_dict()
    assert settings_conflicts(old, both) == []
    assert settings_conflicts(both, new) == [
        "run.methods: cdvae dropped (methods can be added on a resume)"
    ]
    cdvae = make_run_settings().as_dict()
    changed = make_run_settings(generate={"steps_per_level": 20}).as_dict()
    assert settings_conflicts(cdvae, changed) == ["generate.steps_per_level: 10 -> 20"]
    # the seed still binds: the substitution baseline draws with it
    seeded = make_run_settings(run={**substitution, "seed": 3}).as_dict()
    assert settings_conflicts(old, seeded) == ["run.seed: 0 -> 3"]


def test_the_device_can_change_on_a_resume() -> None:
    old = make_run_settings().as_dict()
    assert settings_conflicts(old, make_run_settings(run={"device": "cuda"}).as_dict()) == []
