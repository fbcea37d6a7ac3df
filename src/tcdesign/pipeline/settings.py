"""Settings of ``tcdesign run``: one frozen dataclass per stage, readable from one TOML file.

The TOML file has a table per stage, each key named like a field below (``[run]``,
``[generate]``) or like the fields of the stage's own settings (``[screen]``:
:class:`tcdesign.screen.ScreenSettings`; ``[verify]``:
:class:`tcdesign.verify.settings.VerifySettings`, plus ``preset``, ``pseudo_dir``, ``workers``
and ``max_q_points``)::

    [run]
    n = 100
    methods = ["cdvae", "substitution"]
    verify = 3

    [generate]
    steps_per_level = 20

    [screen]
    tc_min = 5.0

    [verify]
    preset = "coarse"
    pseudo_dir = "/opt/SSSP"

Command-line flags override the file; the file overrides the defaults. The pipeline screens
with ``prescreen_tc = 2.0`` and ``workers = 2`` unless told otherwise (``prescreen_tc = 0``
relaxes every candidate).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from tcdesign.generate.defaults import (
    COMPOSITION_RULE,
    COMPOSITION_TEMPERATURE,
    OPT_LR,
    CompositionRule,
    OptStart,
)

Method = Literal["cdvae", "substitution"]
METHODS: tuple[str, ...] = ("cdvae", "substitution")
DEFAULT_N = 100  # per method; sized so that the defaults finish within 15 minutes on 2 cores
# screening defaults of the pipeline where they differ from ``tcdesign screen``'s: relax only the
# candidates whose unrelaxed predicted Tc reaches 2 K (relaxation is most of the cost), with one
# worker process per core of a laptop
RUN_SCREEN_DEFAULTS: dict[str, Any] = {"prescreen_tc": 2.0, "workers": 2}


@dataclass(frozen=True)
class RunStage:
    """What the pipeline does as a whole."""

    n: int = DEFAULT_N  # crystals generated per method
    methods: tuple[Method, ...] = ("cdvae",)
    seed: int = 0
    verify: int = 0  # verify the top K passed candidates with Quantum ESPRESSO (0: none)
    report: bool = True  # write DIR/report.html at the end
    # where the networks run (CDVAE's score network, CHGNet, the Tc ensemble): cpu, cuda,
    # cuda:N, mps or auto; [screen] device, when given, overrides it for screening
    device: str = "cpu"


@dataclass(frozen=True)
class GenerateStage:
    """How candidates are generated (see ``tcdesign generate --help``)."""

    model: str | None = None  # generator.pt; None: the bundled CDVAE
    optimize_tc: bool = True  # gradient steps on z through the Tc head
    target_tc: float | None = None  # K; aim the optimisation at this Tc instead of maximising
    opt_steps: int = 100
    opt_lr: float = OPT_LR
    opt_start: OptStart = "random"  # "train": start from encoded training crystals
    levels: int | None = None  # noise levels used (None: all 50)
    steps_per_level: int = 10  # Langevin steps per level (CDVAE: 100); 10 keeps the default fast
    step_lr: float = 1e-4
    composition_temperature: float = COMPOSITION_TEMPERATURE  # 1: CDVAE's composition rule
    composition: CompositionRule = COMPOSITION_RULE  # "cdvae": the original rule
    batch_size: int = 16


@dataclass(frozen=True)
class VerifyStage:
    """How the top candidates are verified (``tcdesign verify --help``)."""

    preset: Literal["coarse", "standard"] = "coarse"
    pseudo_dir: str | None = None  # None: /usr/share/espresso/pseudo
    workers: int = 1
    # skip candidates whose phonons need more irreducible q-points than this (0: no limit); a
    # q-point is one ph.x run, and counts range from 1 to 20 and more for two-atom cells
    max_q_points: int = 0
    # also verify candidates whose CHGNet phonons have imaginary modes (phonon_stable false);
    # by default they are skipped: DFT finds such saddle-point cells unstable after hours
    unstable: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # VerifySettings fields


@dataclass(frozen=True)
class RunSettings:
    """Everything ``tcdesign run`` needs; ``screen`` holds ScreenSettings keyword arguments."""

    run: RunStage = RunStage()
    generate: GenerateStage = GenerateStage()
    screen: dict[str, Any] = field(default_factory=dict)
    verify: VerifyStage = VerifyStage()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# counts that must be at least this (a TOML file or a flag giving 0 would fail late or do nothing)
MINIMUMS = {"steps_per_level": 1, "batch_size": 1, "opt_steps": 1, "levels": 1, "workers": 1}
MINIMUMS |= {"np": 1, "el_ph_nsigma": 1, "relax_max_steps": 1}
POSITIVE = {"step_lr", "opt_lr"}  # step sizes (a negative Langevin step makes every sample NaN)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a settings value (from TOML or a flag) has the type of its field."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if origin is Literal:
        return value in get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and not math.isnan(value)
    if hint is str:
        return isinstance(value, str)
    if origin is dict:
        key_type, value_type = get_args(hint)
        return isinstance(value, dict) and all(
            _matches(k, key_type) and _matches(v, value_type) for k, v in value.items()
        )
    return True  # tuples (methods) and anything else are checked where they are used


def _describe(hint: Any) -> str:
    """A type hint in the words of a TOML file: 'a whole number', 'true or false', ..."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(hint) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(map(repr, get_args(hint)))
    if origin is dict:
        return "a table"
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    return words.get(hint, str(hint))


def check_types(cls: type, values: dict[str, Any], where: str) -> None:
    """Raise ValueError naming ``where``, the key and the value when a value of ``values`` does
    not have the type of the field of dataclass ``cls`` it sets, or a count is too small."""
    hints = get_type_hints(cls)
    for name, value in values.items():
        if name not in hints or _matches(value, hints[name]):
            pass
        elif get_origin(hints[name]) is Literal:
            choices = ", ".join(map(str, get_args(hints[name])))
            raise ValueError(f"{where}: unknown {name} {value!r} (choose from {choices})")
        else:
            raise ValueError(f"{where}: {name} must be {_describe(hints[name])}, got {value!r}")
        if name in MINIMUMS and isinstance(value, int) and value < MINIMUMS[name]:
            raise ValueError(f"{where}: {name} must be at least {MINIMUMS[name]} (got {value})")
        if name in POSITIVE and not 0 < value < math.inf:
            raise ValueError(f"{where}: {name} must be a finite number above 0 (got {value})")


def _checked(cls: type, table: dict[str, Any], where: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - names
    if unknown:
        raise ValueError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(names))})"
        )
    check_types(cls, {k: v for k, v in table.items() if k != "methods"}, where)
    return dict(table)


def _run_stage(values: dict[str, Any], where: str) -> RunStage:
    values = _checked(RunStage, values, where)
    if "methods" in values:
        methods = values["methods"]
        if not isinstance(methods, str | list | tuple):
            raise ValueError(
                f"{where}: methods must be a method name or a list of them, got {methods!r}"
            )
        methods = [methods] if isinstance(methods, str) else list(methods)
        if methods == ["both"]:
            methods = list(METHODS)
        bad = [m for m in methods if m not in METHODS]
        if bad or not methods:
            raise ValueError(
                f"{where}: unknown method(s) {', '.join(map(str, bad)) or '(none)'}; choose from "
                f"{', '.join(METHODS)} or both"
            )
        values["methods"] = tuple(dict.fromkeys(methods))
    stage = RunStage(**values)
    if stage.n < 1:
        raise ValueError(f"{where}: n must be at least 1 (got {stage.n})")
    if stage.verify < 0:
        raise ValueError(f"{where}: verify must be 0 or more (got {stage.verify})")
    return stage


def _verify_stage(values: dict[str, Any], where: str) -> VerifyStage:
    from tcdesign.verify.settings import PRESETS, VerifySettings, settings_fields

    own = {"preset", "pseudo_dir", "workers", "max_q_points", "unstable"}
    values = dict(values)
    overrides = {k: values.pop(k) for k in list(values) if k not in own}
    unknown = set(overrides) - settings_fields()
    if unknown:
        raise ValueError(f"{where}: unknown verify setting(s) {', '.join(sorted(unknown))}")
    if values.get("preset", "coarse") not in PRESETS:
        raise ValueError(f"{where}: unknown preset {values['preset']!r} (coarse or standard)")
    check_types(VerifyStage, values, where)
    check_types(VerifySettings, overrides, where)
    if values.get("max_q_points", 0) < 0:
        raise ValueError(f"{where}: max_q_points must be 0 (no limit) or more")
    return VerifyStage(**values, overrides=overrides)


def make_run_settings(
    config: dict[str, dict[str, Any]] | None = None,
    *,
    where: str = "settings",
    **flags: dict[str, Any],
) -> RunSettings:
    """Settings from a parsed TOML document and per-stage flag overrides.

    ``flags`` maps a stage name (run, generate, screen, verify) to the values given on the
    command line (None values are ignored). Raises ValueError naming ``where`` and the bad key.
    """
    config = dict(config or {})
    unknown = set(config) - {"run", "generate", "screen", "verify"}
    if unknown:
        raise ValueError(
            f"{where}: unknown table(s) {', '.join(sorted(unknown))} "
            "(use [run], [generate], [screen], [verify])"
        )
    merged: dict[str, dict[str, Any]] = {}
    for stage in ("run", "generate", "screen", "verify"):
        table = config.get(stage, {})
        if not isinstance(table, dict):
            raise ValueError(f"{where}: [{stage}] must be a table")
        given = {k: v for k, v in flags.get(stage, {}).items() if v is not None}
        defaults = RUN_SCREEN_DEFAULTS if stage == "screen" else {}
        merged[stage] = {**defaults, **table, **given}
    generate_values = _checked(GenerateStage, merged["generate"], f"{where} [generate]")
    for key, choices, default in (
        ("composition", CompositionRule, COMPOSITION_RULE),
        ("opt_start", OptStart, "random"),
    ):
        value = generate_values.get(key, default)
        if value not in get_args(choices):
            raise ValueError(
                f"{where} [generate]: unknown {key} {value!r} "
                f"(choose from {', '.join(get_args(choices))})"
            )
    from tcdesign.screen.settings import ScreenSettings

    try:
        ScreenSettings.from_dict(merged["screen"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} [screen]: {exc}") from None
    try:
        return RunSettings(
            run=_run_stage(merged["run"], f"{where} [run]"),
            generate=GenerateStage(**generate_values),
            screen=merged["screen"],
            verify=_verify_stage(merged["verify"], f"{where} [verify]"),
        )
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_run_toml(path: str | Path) -> dict[str, dict[str, Any]]:
    """The parsed settings file; ValueError naming the file when it cannot be read."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read TOML ({exc})") from None
