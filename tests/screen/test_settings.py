"""ScreenSettings: defaults of the paper, validation, TOML, and the rules."""

from __future__ import annotations

import math

import pytest

from tcdesign.screen.api import rule_failures
from tcdesign.screen.settings import ScreenSettings, read_settings_toml


def test_defaults_are_the_papers_rules():
    settings = ScreenSettings()
    assert (settings.tc_min, settings.eform_max, settings.gap_max) == (5.0, 0.0, 0.05)
    assert settings.ehull_max is None and settings.tc_sigma_k == 0.0
    assert settings.eform_scale == "jarvis"


def test_unknown_and_bad_values_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown screen setting.*tc_max.*valid:.*tc_min"):
        ScreenSettings.from_dict({"tc_max": 3})
    with pytest.raises(TypeError, match="tc_max"):
        ScreenSettings(**{"tc_max": 3})
    with pytest.raises(ValueError, match="workers"):
        ScreenSettings(workers=0)
    with pytest.raises(ValueError, match="tc_min"):
        ScreenSettings(tc_min=float("nan"))
    with pytest.raises(ValueError, match="optimizer"):
        ScreenSettings(optimizer="LBFGS")
    with pytest.raises(ValueError, match="eform_scale must be jarvis or mp"):
        ScreenSettings(eform_scale="dft")
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="hull_prototypes must be an integer >= 0"):
            ScreenSettings(hull_prototypes=bad)
    with pytest.raises(ValueError, match="hull_prototypes extends the chgnet hull"):
        ScreenSettings(hull_prototypes=2, hull_reference="mp")


def test_toml_table(tmp_path):
    path = tmp_path / "screen.toml"
    path.write_text("[screen]\ntc_min = 8.0\nehull_max = 0.1\nworkers = 2\n")
    settings = ScreenSettings.from_dict(read_settings_toml(path), tc_sigma_k=1.0)
    assert settings.tc_min == 8.0 and settings.ehull_max == 0.1 and settings.workers == 2
    assert settings.tc_sigma_k == 1.0
    (tmp_path / "bad.toml").write_text("tc_min = [")
    with pytest.raises(ValueError, match="not valid TOML"):
        read_settings_toml(tmp_path / "bad.toml")


def row(tc=10.0, tc_std=2.0, e_form=-0.3, gap=0.0, e_hull=0.05, **more) -> dict:
    return {"tc": tc, "tc_std": tc_std, "e_form": e_form, "gap": gap, "e_hull": e_hull, **more}


def test_rules():
    settings = ScreenSettings()
    assert rule_failures(row(), settings) == []
    assert rule_failures(row(tc=4.9), settings) == ["tc"]
    assert rule_failures(row(e_form=0.0), settings) == ["e_form"]  # strictly below 0
    assert rule_failures(row(gap=0.05), settings) == ["gap"]
    assert rule_failures(row(e_form=math.nan), settings) == ["e_form"]
    # the hull rule only when asked for
    assert rule_failures(row(e_hull=0.5), settings) == []
    assert rule_failures(row(e_hull=0.5), ScreenSettings(ehull_max=0.1)) == ["e_hull"]
    # the magnetism rule likewise; a row without a moment (an older progress file) fails it
    assert rule_failures(row(magmom=1.2), settings) == []
    assert rule_failures(row(magmom=1.2), ScreenSettings(magmom_max=0.5)) == ["magmom"]
    assert rule_failures(row(magmom=0.01), ScreenSettings(magmom_max=0.5)) == []
    assert rule_failures(row(), ScreenSettings(magmom_max=0.5)) == ["magmom"]
    # uncertainty-aware: 10 - 2 * 2 = 6 passes 5 K, 10 - 3 * 2 = 4 does not
    assert rule_failures(row(), ScreenSettings(tc_sigma_k=2.0)) == []
    assert rule_failures(row(), ScreenSettings(tc_sigma_k=3.0)) == ["tc"]
    # a model without a spread (one member: NaN std) passes on Tc alone unless k > 0
    assert rule_failures(row(tc_std=math.nan), settings) == []
    assert rule_failures(row(tc_std=math.nan), ScreenSettings(tc_sigma_k=1.0)) == ["tc"]
    # switched-off rules
    relaxed = ScreenSettings(eform_max=None, gap_max=None)
    assert rule_failures(row(e_form=1.0, gap=3.0), relaxed) == []


def test_device_must_be_a_name() -> None:
    from tcdesign.screen.settings import ScreenSettings

    assert ScreenSettings(device="cuda:1").device == "cuda:1"  # resolved where it is used
    with pytest.raises(ValueError, match="device"):
        ScreenSettings(device="")


def test_the_stability_rule():
    strict = ScreenSettings(require_stable=True)
    assert rule_failures(row(phonon_stable=True), strict) == []
    assert rule_failures(row(phonon_stable=False), strict) == ["stable"]
    assert rule_failures(row(phonon_stable=False), ScreenSettings()) == []  # off by default
    # a candidate that passes the rest but could not be checked fails it ...
    assert rule_failures(row(phonon_stable=None), strict) == ["stable"]
    # ... one that fails another rule, and so was never checked, does not list it
    assert rule_failures(row(tc=1.0), strict) == ["tc"]
    assert rule_failures(row(tc=1.0, phonon_stable=False), strict) == ["tc", "stable"]
    with pytest.raises(ValueError, match="require_stable needs the phonon check"):
        ScreenSettings(require_stable=True, phonons=False)
    with pytest.raises(ValueError, match="phonon_tolerance must be >= 0"):
        ScreenSettings(phonon_tolerance=-1.0)
    with pytest.raises(ValueError, match="phonons must be true or false"):
        ScreenSettings(phonons="yes")
