"""Pipeline stages on hand-made run folders: funnel counts, ranking, choosing what QE can run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tcdesign.pipeline.run import (
    RunFolder,
    choose_for_verification,
    earlier_verification,
    funnel_counts,
    rank_candidates,
    run_pipeline,
    verified_counts,
    verify_stage,
)
from tcdesign.pipeline.settings import make_run_settings

AL = Structure(
    Lattice.cubic(4.04), ["Al"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
)
NBC = Structure(Lattice.cubic(4.47), ["Nb", "C"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def write_upf(folder: Path, name: str, element: str) -> None:
    """A minimal UPF v2 header, enough for the pseudopotential chooser."""
    (folder / name).write_text(
        f'<UPF version="2.0.1">\n<PP_HEADER element="{element}" pseudo_type="NC" is_paw="F" '
        'relativistic="scalar" functional="SLA PW PBX PBC"\nwfc_cutoff="30" rho_cutoff="120" '
        'z_valence="3.0"/>\n</UPF>\n'
    )


def make_method(root: Path, method: str, rows: list[dict]) -> None:
    """DIR/<method>/generated.csv and screened.csv with relaxed CIFs for the given rows."""
    folder = root / method
    (folder / "relaxed").mkdir(parents=True)
    generated = [{"id": r["id"], "status": r.get("gen_status", "ok")} for r in rows]
    pd.DataFrame(generated).to_csv(folder / "generated.csv", index=False)
    screened = []
    for r in rows:
        if r.get("gen_status", "ok") != "ok":
            continue
        r["structure"].to(filename=str(folder / "relaxed" / f"{r['id']}.cif"))
        screened.append(
            {
                "id": r["id"],
                "formula": r["structure"].composition.reduced_formula,
                "tc": r["tc"],
                "tc_std": 1.0,
                "status": r.get("status", "ok"),
                "passed": r.get("passed", True),
                "relaxed_cif": f"relaxed/{r['id']}.cif",
            }
        )
    pd.DataFrame(screened).to_csv(folder / "screened.csv", index=False)


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    make_method(
        tmp_path,
        "cdvae",
        [
            {"id": "gen-00000", "structure": NBC, "tc": 12.0},
            {"id": "gen-00001", "structure": AL, "tc": 7.0},
            {"id": "gen-00002", "structure": AL, "tc": 2.0, "passed": False},
            {"id": "gen-00003", "structure": AL, "tc": 9.0, "status": "failed", "passed": False},
            {"id": "gen-00004", "structure": AL, "tc": 0.0, "gen_status": "broken"},
        ],
    )
    make_method(tmp_path, "substitution", [{"id": "gen-00000", "structure": AL, "tc": 8.0}])
    return tmp_path


def test_funnel_counts(run_dir: Path) -> None:
    counts = funnel_counts(run_dir / "cdvae")
    assert counts == {"generated": 5, "valid": 4, "screened": 4, "relaxed": 3, "passed": 2}
    assert funnel_counts(run_dir / "nothing")["generated"] == 0


def test_ranking_merges_methods_by_tc(run_dir: Path) -> None:
    folder = RunFolder(run_dir, make_run_settings().as_dict())
    ranked = rank_candidates(folder, ("cdvae", "substitution"))
    assert list(ranked.tc) == [12.0, 8.0, 7.0]
    assert list(ranked["rank"]) == [1, 2, 3]
    assert list(ranked.method) == ["cdvae", "substitution", "cdvae"]
    assert all((run_dir / cif).is_file() for cif in ranked.cif)
    assert (run_dir / "candidates.csv").is_file()


def test_verification_skips_elements_without_pseudopotentials(
    run_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tcdesign.verify.workflow.missing_programs", lambda np_ranks=1: [])
    pseudo = tmp_path_factory.mktemp("pseudo")
    write_upf(pseudo, "Al.pbe.UPF", "Al")
    write_upf(pseudo, "C.pbe.UPF", "C")
    folder = RunFolder(run_dir, make_run_settings().as_dict())
    ranked = rank_candidates(folder, ("cdvae", "substitution"))
    chosen, skipped = choose_for_verification(ranked, run_dir, 2, str(pseudo), {})
    assert [r.id for r in chosen] == ["substitution-gen-00000", "cdvae-gen-00001"]
    assert chosen[0].structure.composition.reduced_formula == "Al"
    assert [s["id"] for s in skipped] == ["cdvae-gen-00000"]
    assert "Nb" in skipped[0]["reason"]


def test_verification_without_quantum_espresso_says_so(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tcdesign.verify.workflow.missing_programs", lambda np_ranks=1: ["pw.x"])
    folder = RunFolder(run_dir, make_run_settings().as_dict())
    ranked = rank_candidates(folder, ("cdvae",))
    chosen, skipped = choose_for_verification(ranked, run_dir, 1, None, {})
    assert chosen == []
    # only the top K would have run: the other passed candidates are not listed as skipped
    assert [s["id"] for s in skipped] == ["cdvae-gen-00000"]
    assert "pw.x not found" in skipped[0]["reason"]


def test_earlier_verification_is_kept_for_candidates_still_ranked(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun that verifies nothing new (QE missing, or --verify 0) reported 0 verified in
    run.json while verify/verify.csv, which the report shows, kept every earlier row, also of
    candidates that no longer pass."""
    monkeypatch.setattr("tcdesign.verify.workflow.missing_programs", lambda np_ranks=1: ["pw.x"])
    (run_dir / "verify").mkdir()
    pd.DataFrame(
        {
            "id": ["cdvae-gen-00001", "cdvae-gen-00002"],  # gen-00002 does not pass (any more)
            "status": ["ok", "ok"],
            "tc_K": [9.0, 7.0],
            "dynamically_stable": [True, True],
            "method": ["cdvae", "cdvae"],
            "source_id": ["gen-00001", "gen-00002"],
        }
    ).to_csv(run_dir / "verify" / "verify.csv", index=False)
    settings = make_run_settings({"run": {"verify": 1}})
    folder = RunFolder(run_dir, settings.as_dict())
    ranked = rank_candidates(folder, ("cdvae", "substitution"))
    table, skipped = verify_stage(folder, settings, ranked)
    assert skipped and list(table.id) == ["cdvae-gen-00001"]
    assert verified_counts(table, "cdvae", 5.0)["dft_tc_above_min"] == 1
    written = pd.read_csv(run_dir / "verify" / "verify.csv")
    assert list(written.id) == ["cdvae-gen-00001"]
    assert list(earlier_verification(folder, ranked).id) == ["cdvae-gen-00001"]  # --verify 0
    assert earlier_verification(folder, ranked.iloc[:0]).empty


def test_verified_counts() -> None:
    table = pd.DataFrame(
        {
            "method": ["cdvae", "cdvae", "cdvae", "substitution"],
            "status": ["ok", "ok", "error", "ok"],
            "tc_K": [8.0, 2.0, None, 6.0],
            "dynamically_stable": [False, True, None, True],
        }
    )
    assert verified_counts(table, "cdvae", 5.0) == {
        "verified": 2,
        "dft_tc_above_min": 1,
        "dft_stable_above_min": 0,
    }
    assert verified_counts(pd.DataFrame(), "cdvae", 5.0)["verified"] == 0


def test_a_run_folder_refuses_other_settings(tmp_path: Path) -> None:
    RunFolder(tmp_path, make_run_settings(run={"n": 3}).as_dict())
    RunFolder(tmp_path, make_run_settings(run={"n": 5}).as_dict())  # n may grow
    with pytest.raises(ValueError, match="run.seed"):
        RunFolder(tmp_path, make_run_settings(run={"n": 5, "seed": 4}).as_dict())


def test_an_unreadable_run_json_is_not_a_fresh_start(tmp_path: Path) -> None:
    """A truncated run.json (a kill while it was written) was read as empty, so a rerun with
    another seed went on without a word and mixed two runs in one folder."""
    folder = RunFolder(tmp_path, make_run_settings(run={"n": 3}).as_dict())
    folder.record("generate", 1.0)
    assert not list(tmp_path.glob("*.partial"))  # written whole, then renamed
    text = (tmp_path / "run.json").read_text()
    (tmp_path / "run.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="run.json cannot be read"):
        RunFolder(tmp_path, make_run_settings(run={"n": 3, "seed": 4}).as_dict())


def test_a_resume_can_grow_a_run_but_not_shrink_it(tmp_path: Path) -> None:
    """A smaller n or a dropped method left the earlier run's extra crystals and method folder
    in run.json's funnel and the report (3 generated for an n = 2 run, a method not run)."""
    both = {"n": 3, "methods": ["cdvae", "substitution"]}
    RunFolder(tmp_path, make_run_settings(run=both).as_dict())
    with pytest.raises(ValueError, match=r"run.n: 3 -> 2 \(n can grow"):
        RunFolder(tmp_path, make_run_settings(run={**both, "n": 2}).as_dict())
    with pytest.raises(ValueError, match="run.methods: cdvae dropped"):
        RunFolder(tmp_path, make_run_settings(run={**both, "methods": ["substitution"]}).as_dict())
    RunFolder(tmp_path, make_run_settings(run={**both, "n": 4, "verify": 1}).as_dict())
    assert json.loads((tmp_path / "run.json").read_text())["settings"]["run"]["n"] == 4


def test_verify_stage_labels_rows_with_method_and_source(
    run_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The glue around tcdesign verify (whose QE workflow is tested in tests/verify)."""
    monkeypatch.setattr("tcdesign.verify.workflow.missing_programs", lambda np_ranks=1: [])
    pseudo = tmp_path_factory.mktemp("pseudo")
    write_upf(pseudo, "Al.pbe.UPF", "Al")
    seen: list[str] = []

    def fake_run_many(records, out, settings, pseudo_dir, workers=1, progress=False):
        seen.extend(r.id for r in records)
        assert settings.preset == "coarse" and settings.mu_star == 0.12
        return pd.DataFrame(
            {
                "id": [r.id for r in records],
                "status": "ok",
                "tc_K": [6.0, 1.0],
                "dynamically_stable": [True, True],
            }
        )

    monkeypatch.setattr("tcdesign.verify.executor.run_many", fake_run_many)
    (run_dir / "verify").mkdir()
    settings = make_run_settings(
        {"run": {"verify": 2}, "verify": {"pseudo_dir": str(pseudo), "mu_star": 0.12}}
    )
    folder = RunFolder(run_dir, settings.as_dict())
    ranked = rank_candidates(folder, ("cdvae", "substitution"))
    table, skipped = verify_stage(folder, settings, ranked)
    assert seen == ["substitution-gen-00000", "cdvae-gen-00001"]
    assert [s["id"] for s in skipped] == ["cdvae-gen-00000"]  # NbC: no Nb pseudopotential
    written = pd.read_csv(run_dir / "verify" / "verify.csv")
    assert list(written.method) == ["substitution", "cdvae"]
    assert list(written.source_id) == ["gen-00000", "gen-00001"]
    assert verified_counts(table, "substitution", 5.0)["dft_tc_above_min"] == 1


def test_stage_times_add_up_over_invocations(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path, make_run_settings().as_dict())
    folder.record("screen", 60.0)
    resumed = RunFolder(tmp_path, make_run_settings().as_dict())
    resumed.record("screen", 1.5)
    assert json.loads((tmp_path / "run.json").read_text())["seconds"]["screen"] == 61.5


def test_a_failed_report_leaves_the_run_unfinished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run.json said 'finished' (set for the report's header) when the report then crashed or
    was interrupted."""
    monkeypatch.setattr("tcdesign.pipeline.run.generate_stage", lambda *args: None)
    monkeypatch.setattr("tcdesign.pipeline.run.screen_stage", lambda *args: None)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("tcdesign.report.write_report", interrupted)
    settings = make_run_settings({"run": {"n": 1, "methods": ["substitution"]}})
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tmp_path, settings, progress=False, echo=lambda line: None)
    assert json.loads((tmp_path / "run.json").read_text())["finished"] is None


def test_the_run_device_reaches_generation_and_screening(tmp_path: Path, monkeypatch) -> None:
    """[run] device goes to the generator and, unless [screen] sets its own, to screening."""
    import tcdesign.generate.api as generate_api
    import tcdesign.pipeline.run as run_module

    seen: dict[str, object] = {}

    class StopError(Exception):
        pass

    def fake_generate(*args, **kwargs):
        seen["generate"] = kwargs["device"]

    def fake_screen(folder, n, method, screen_settings, progress):
        seen["screen"] = screen_settings.device
        raise StopError

    monkeypatch.setattr(generate_api, "generate", fake_generate)
    monkeypatch.setattr(run_module, "screen_stage", fake_screen)
    monkeypatch.setattr(run_module, "funnel_counts", lambda folder: {"generated": 0, "valid": 0})
    settings = make_run_settings(run={"device": "cpu"})
    with pytest.raises(StopError):
        run_pipeline(tmp_path / "a", settings, progress=False, echo=lambda line: None)
    assert seen == {"generate": "cpu", "screen": "cpu"}
    settings = make_run_settings(run={"device": "auto"}, screen={"device": "cpu"})
    with pytest.raises(StopError):
        run_pipeline(tmp_path / "b", settings, progress=False, echo=lambda line: None)
    assert seen == {"generate": "auto", "screen": "cpu"}


def _ranked_with_qe(
    run_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, pd.DataFrame]:
    """A pseudopotential folder for every element of the run's candidates, QE taken as
    installed, and the ranked candidates."""
    monkeypatch.setattr("tcdesign.verify.workflow.missing_programs", lambda np_ranks=1: [])
    pseudo = tmp_path_factory.mktemp("pseudo")
    for element in ("Al", "C", "Nb"):
        write_upf(pseudo, f"{element}.pbe.UPF", element)
    folder = RunFolder(run_dir, make_run_settings().as_dict())
    return pseudo, rank_candidates(folder, ("cdvae", "substitution"))


def test_verification_skips_candidates_with_too_many_q_points(
    run_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_q_points: a candidate whose q-grid has more irreducible points is skipped with the
    count in the reason, and the next one runs in its place."""
    from tcdesign.verify.plan import plan_row
    from tcdesign.verify.settings import make_settings

    pseudo, ranked = _ranked_with_qe(run_dir, tmp_path_factory, monkeypatch)
    settings = make_settings("coarse")
    counts = {
        f"{row.method}-{row.id}": plan_row(
            Structure.from_file(run_dir / row.cif), settings, pseudo
        )["irreducible_q_points"]
        for row in ranked.itertuples()
    }
    limit = min(counts.values())
    assert max(counts.values()) > limit  # the fixture has crystals of different cost
    chosen, skipped = choose_for_verification(
        ranked, run_dir, len(ranked), str(pseudo), {}, max_q_points=limit, qe_settings=settings
    )
    assert chosen and all(counts[r.id] <= limit for r in chosen)
    assert skipped and all(counts[s["id"]] > limit for s in skipped)
    assert len(chosen) + len(skipped) == len(ranked)
    assert f"above max_q_points {limit}" in skipped[0]["reason"]
    unlimited, none_skipped = choose_for_verification(ranked, run_dir, 1, str(pseudo), {})
    assert unlimited[0].id == ranked.method[0] + "-" + ranked.id[0] and not none_skipped


def test_run_settings_take_max_q_points() -> None:
    assert make_run_settings({"verify": {"max_q_points": 8}}).verify.max_q_points == 8
    with pytest.raises(ValueError, match="max_q_points"):
        make_run_settings({"verify": {"max_q_points": -1}})


def test_verification_skips_candidates_chgnet_finds_unstable(
    run_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """phonon_stable False: skipped with the lowest frequency in the reason, the next one runs;
    unstable=True (--verify-unstable) runs it; unchecked candidates (no value) are not skipped."""
    pseudo, ranked = _ranked_with_qe(run_dir, tmp_path_factory, monkeypatch)
    assert {"phonon_stable", "phonon_min_freq_cm1"} <= set(ranked.columns)
    ranked["phonon_stable"] = [False, True, None]
    ranked["phonon_min_freq_cm1"] = [-87.4, 0.0, float("nan")]
    ids = [f"{m}-{i}" for m, i in zip(ranked.method, ranked.id, strict=True)]
    chosen, skipped = choose_for_verification(ranked, run_dir, 2, str(pseudo), {})
    assert [r.id for r in chosen] == ids[1:]
    assert [s["id"] for s in skipped] == ids[:1]
    assert "imaginary CHGNet phonon modes (lowest -87 cm^-1)" in skipped[0]["reason"]
    chosen, skipped = choose_for_verification(ranked, run_dir, 2, str(pseudo), {}, unstable=True)
    assert [r.id for r in chosen] == ids[:2] and not skipped
    assert make_run_settings({"verify": {"unstable": True}}).verify.unstable
