"""screen_records end to end on tiny cells: statuses, columns, physics, duplicates, resume, dask."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Composition, Structure

import tcdesign.screen.api as api
import tcdesign.screen.candidate as candidate_module
from tcdesign.data.io import StructureRecord
from tcdesign.screen import COLUMNS, ScreenSettings, phonons, prototypes, screen_records
from tcdesign.screen.api import PROGRESS_FILE
from tcdesign.screen.candidate import screen_candidate
from tests.screen.conftest import fcc_al, mgb2, rocksalt_nacl
from tests.screen.test_prototypes import rocksalt

SPEC_COLUMNS = [
    "id", "formula", "tc", "tc_std", "e_form", "gap", "e_hull", "spacegroup", "novel", "passed",
    "status", "error",
]  # fmt: skip


@pytest.fixture(scope="module")
def screened(candidates, tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    out = tmp_path_factory.mktemp("screen")
    return screen_records(candidates, out, ScreenSettings(), progress=False), out


def by_id(table: pd.DataFrame) -> dict[str, pd.Series]:
    return {row.id: row for _, row in table.iterrows()}


def test_columns_statuses_and_order(screened):
    table, out = screened
    assert list(table.columns[: len(SPEC_COLUMNS)]) == SPEC_COLUMNS
    assert list(table.columns) == COLUMNS
    rows = by_id(table)
    assert {k: rows[k].status for k in rows} == {
        "al": "ok", "nacl": "ok", "mgb2": "ok", "al-copy": "ok", "am": "failed", "broken": "error",
    }  # fmt: skip
    assert "Am" in rows["am"].error and rows["broken"].error.startswith("CIF does not parse")
    ok = table[table.status == "ok"]
    assert list(ok.tc) == sorted(ok.tc, reverse=True)  # sorted by Tc, NaN rows last
    assert table.tc.isna().sum() == 2 and table.tail(2).tc.isna().all()
    # every usable input row has its unrelaxed Tc, the broken one has none
    assert table.tc_unrelaxed.notna().sum() == 5 and math.isnan(rows["broken"].tc_unrelaxed)
    on_disk = pd.read_csv(out / "screened.csv", dtype={"id": str})
    assert list(on_disk.id) == list(table.id)


def test_physics_of_the_relaxed_cells(screened):
    table, out = screened
    rows = by_id(table)
    al = rows["al"]
    assert al.e_form == pytest.approx(0.0, abs=0.02)  # an element is its own reference
    assert al.e_hull == pytest.approx(0.0, abs=0.02)
    assert al.spacegroup == "Fm-3m" and al.spacegroup_number == 225
    assert rows["nacl"].e_form < -1.5  # NaCl: about -2.1 eV/atom (MP -2.1)
    assert rows["nacl"].gap > 3.0 and not rows["nacl"].metallic
    assert rows["mgb2"].spacegroup == "P6/mmm" and rows["mgb2"].metallic
    assert rows["mgb2"].e_form < 0
    assert (table[table.status == "ok"].magmom < 0.1).all()  # no magnetic crystal among them
    cif = out / al.relaxed_cif
    assert al.relaxed_cif == "relaxed/al.cif" and cif.is_file()
    relaxed = Structure.from_file(cif)
    cubic_a = (4 * relaxed.volume / len(relaxed)) ** (1 / 3)  # fcc: 4 atoms per cube
    assert cubic_a == pytest.approx(4.04, abs=0.05)
    assert "chgnet" in al.ehull_reference


def test_duplicates_novelty_and_rules(screened):
    table, _ = screened
    rows = by_id(table)
    assert rows["al-copy"].duplicate_of == "al" and pd.isna(rows["al"].duplicate_of)
    assert not rows["al-copy"].passed and "duplicate" in rows["al-copy"].rules_failed
    assert not rows["mgb2"].novel  # MgB2 is a training crystal
    assert rows["nacl"].novel  # NaCl is not
    for row in rows.values():
        if row.status != "ok":
            assert not row.passed
        else:
            expected = (
                row.tc >= 5 and row.e_form < 0 and row.gap < 0.05 and pd.isna(row.duplicate_of)
            )
            assert row.passed == expected


def test_resume_skips_finished_candidates_and_gives_the_same_table(
    candidates, screened, tmp_path, monkeypatch
):
    full, _ = screened
    out = tmp_path / "resumed"
    screen_records(candidates[:2], out, ScreenSettings(), progress=False)
    with (out / PROGRESS_FILE).open("a") as handle:  # a run killed while writing a row
        handle.write('{"id": "mgb2", "status": "o')
    relaxed_ids: list[str] = []

    def counting(job):
        relaxed_ids.append(job.id)
        return screen_candidate(job)

    monkeypatch.setattr("tcdesign.screen.api.screen_candidate", counting)
    table = screen_records(candidates, out, ScreenSettings(), progress=False)
    assert sorted(relaxed_ids) == ["al-copy", "am", "mgb2"]  # al and nacl were finished
    timing = ["stage_seconds"]  # wall times differ between two runs; everything else is equal
    pd.testing.assert_frame_equal(table.drop(columns=timing), full.drop(columns=timing))
    lines = (out / PROGRESS_FILE).read_text().splitlines()
    assert len([json.loads(line) for line in lines[:2]]) == 2


def test_rows_stream_to_screened_csv_while_the_run_goes_on(candidates, tmp_path, monkeypatch):
    """A run killed after two candidates leaves them in screened.csv, before the final checks."""
    done: list[str] = []

    def killed_on_the_third(job):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(job.id)
        return screen_candidate(job)

    monkeypatch.setattr("tcdesign.screen.api.STREAM_SECONDS", 0.0)
    monkeypatch.setattr("tcdesign.screen.api.STREAM_COST_FRACTION", 0.0)
    monkeypatch.setattr("tcdesign.screen.api.screen_candidate", killed_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        screen_records(candidates, tmp_path, ScreenSettings(), progress=False)
    partial = pd.read_csv(tmp_path / "screened.csv", dtype={"id": str})
    assert set(done) <= set(partial.id)
    assert list(partial.columns) == COLUMNS
    assert partial.novel.isna().all()  # novelty and duplicates come with the final table
    finished = partial[partial.id.isin(done)]
    assert finished.status.isin(["ok", "failed"]).all()


def test_other_settings_in_the_same_folder_are_refused(candidates, tmp_path):
    from tcdesign.data.io import InputError

    screen_records(candidates[:1], tmp_path, ScreenSettings(), progress=False)
    with pytest.raises(InputError, match="fmax"):
        screen_records(candidates[:1], tmp_path, ScreenSettings(fmax=0.1), progress=False)
    # rules may change between runs: they are applied at the end
    table = screen_records(candidates[:1], tmp_path, ScreenSettings(tc_min=0.0), progress=False)
    assert table.status.tolist() == ["ok"]


def test_reference_settings_change_without_relaxing_again(candidates, tmp_path, monkeypatch):
    nacl = [c for c in candidates if c.id == "nacl"]
    jarvis = screen_records(nacl, tmp_path, ScreenSettings(), progress=False)
    assert jarvis.ehull_reference[0].startswith("chgnet/jarvis: elements + ")
    calls: list[str] = []
    monkeypatch.setattr(candidate_module, "relax_structure", lambda *a, **k: calls.append("x"))
    mp = screen_records(nacl, tmp_path, ScreenSettings(eform_scale="mp"), progress=False)
    assert not calls and mp.status.tolist() == ["ok"]
    assert mp.ehull_reference[0].startswith("chgnet: elements + ")
    # NaCl: the fitted Na and Cl corrections move its formation energy
    assert abs(mp.e_form[0] - jarvis.e_form[0]) > 0.01
    assert mp.energy_per_atom[0] == jarvis.energy_per_atom[0]


def test_prototypes_give_a_candidate_in_an_empty_chemical_system_a_real_hull(tmp_path, monkeypatch):
    # no training crystal has Sc and Sb: against its elements alone rock-salt ScSb is far below
    # the hull; against the competing Sc-Sb crystals built from the training prototypes (here
    # only the stoichiometries 50 or more training crystals share: AB, AB2, AB3) it is not
    monkeypatch.setattr(prototypes, "MIN_PATTERN_COUNT", 50)
    scsb = [StructureRecord("scsb", rocksalt("Sc", "Sb", 5.85))]
    loose = {"tc_min": -1e9, "eform_max": None, "gap_max": None}  # every ok row a contender
    plain = screen_records(scsb, tmp_path / "plain", ScreenSettings(**loose), progress=False)
    assert plain.ehull_reference[0] == "chgnet/jarvis: elements + 0 compounds"
    assert plain.e_hull[0] == pytest.approx(plain.e_form_chgnet[0]) and plain.e_hull[0] < -0.5
    settings = ScreenSettings(**loose, hull_prototypes=1, ehull_max=0.1)
    out = tmp_path / "prototypes"
    table = screen_records(scsb, out, settings, progress=False)
    built = pd.read_csv(out / prototypes.PROTOTYPE_TABLE)
    assert sorted(Composition(f).reduced_formula for f in built.formula) == sorted(
        ["ScSb", "ScSb2", "Sc2Sb", "ScSb3", "Sc3Sb"]
    )
    assert table.ehull_reference[0] == (
        f"chgnet/jarvis+{(built.status == 'ok').sum()} prototypes: elements + "
        f"{(built.status == 'ok').sum()} compounds"
    )
    assert table.e_hull[0] > -0.05 and table.e_hull[0] > plain.e_hull[0] + 0.4
    assert table.passed[0] == (table.e_hull[0] <= 0.1)
    assert table.e_form_chgnet[0] == pytest.approx(plain.e_form_chgnet[0])  # only the hull moves

    def no_relaxation(job):
        raise AssertionError(f"relaxed {job.id} again")

    monkeypatch.setattr(prototypes, "relax_prototype", no_relaxation)
    again = screen_records(scsb, out, settings, progress=False)
    pd.testing.assert_frame_equal(again, table)


def test_prescreen_skips_low_tc_and_no_relax(candidates, tmp_path, monkeypatch):
    calls: list[str] = []
    original = candidate_module.relax_structure
    monkeypatch.setattr(
        candidate_module, "relax_structure", lambda s, **k: calls.append("x") or original(s, **k)
    )
    table = screen_records(
        candidates[:3], tmp_path / "pre", ScreenSettings(prescreen_tc=1e6), progress=False
    )
    assert set(table.status) == {"skipped"} and calls == []
    assert table.tc_unrelaxed.notna().all() and not table.passed.any()
    table = screen_records(
        candidates[:2], tmp_path / "static", ScreenSettings(relax=False), progress=False
    )
    assert calls == [] and set(table.status) == {"ok"}
    assert table.relaxed_cif.isna().all() and table.relax_steps.isna().all()


def test_dask_local_cluster_gives_the_same_rows(candidates, screened, tmp_path):
    distributed = pytest.importorskip("distributed")
    full, _ = screened
    subset = [r for r in candidates if r.id in ("al", "am", "broken")]
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        settings = ScreenSettings(scheduler=cluster.scheduler_address)
        table = screen_records(subset, tmp_path, settings, progress=False)
    expected = full.set_index("id").loc[list(table.id)].reset_index()
    columns = ["id", "status", "tc", "tc_std", "e_form", "e_hull", "gap", "spacegroup", "novel"]
    pd.testing.assert_frame_equal(table[columns], expected[columns])


def test_bad_rows_only(tmp_path):
    records = [StructureRecord("x", None, error="empty CIF")]
    table = screen_records(records, tmp_path, ScreenSettings(), progress=False)
    assert table.status.tolist() == ["error"] and not table.passed.any()


# --- review fixes -------------------------------------------------------------------------------


def test_streaming_a_slow_table_is_spaced_by_what_it_costs(candidates, tmp_path, monkeypatch):
    """Rewriting screened.csv of a huge run takes long; the next rewrite waits many times that,
    so a large screen does not spend its time rewriting its own table."""
    streamed: list[bool] = []
    finish = api._finish

    def recording(*args, final=True, **kwargs):
        streamed.append(final)
        return finish(*args, final=final, **kwargs)

    monkeypatch.setattr(api, "_finish", recording)
    monkeypatch.setattr(api, "STREAM_SECONDS", 0.0)
    monkeypatch.setattr(api, "STREAM_COST_FRACTION", 1e9)  # any cost > 0 waits "forever"
    screen_records(candidates, tmp_path, ScreenSettings(), progress=False)
    assert streamed.count(False) == 1  # the first finished candidate only
    assert streamed[-1] is True  # the final table


def _counting(monkeypatch) -> list[str]:
    """Record the ids of the candidates the run computes (relaxes or evaluates)."""
    ids: list[str] = []

    def counting(job):
        ids.append(job.id)
        return screen_candidate(job)

    monkeypatch.setattr("tcdesign.screen.api.screen_candidate", counting)
    return ids


def test_a_changed_input_under_the_same_id_is_recomputed(tmp_path, monkeypatch, capsys):
    """Ids repeat between inputs (row numbers): a rerun into the same folder with another
    crystal under id 0 must not show the old crystal's row."""
    out = tmp_path / "out"
    static = ScreenSettings(relax=False)
    first = screen_records([StructureRecord("0", fcc_al(4.04))], out, static, progress=False)
    assert first.formula.tolist() == ["Al"]
    capsys.readouterr()
    computed = _counting(monkeypatch)
    second = screen_records([StructureRecord("0", rocksalt_nacl())], out, static, progress=False)
    assert computed == ["0"]
    assert second.formula.tolist() == ["NaCl"] and second.e_form[0] < -1.5
    assert "1 rows of" in capsys.readouterr().err
    # the same input again: reused; a progress file without fingerprints (older tcdesign) too
    third = screen_records([StructureRecord("0", rocksalt_nacl())], out, static, progress=False)
    rows = [json.loads(line) for line in (out / PROGRESS_FILE).read_text().splitlines()]
    assert all(row.get("input_fingerprint") for row in rows)
    stripped = [{k: v for k, v in row.items() if k != "input_fingerprint"} for row in rows]
    (out / PROGRESS_FILE).write_text("".join(json.dumps(row) + "\n" for row in stripped))
    fourth = screen_records([StructureRecord("0", rocksalt_nacl())], out, static, progress=False)
    assert computed == ["0"] and "changed input" not in capsys.readouterr().err
    timing = ["stage_seconds"]
    pd.testing.assert_frame_equal(third.drop(columns=timing), second.drop(columns=timing))
    pd.testing.assert_frame_equal(fourth.drop(columns=timing), second.drop(columns=timing))


def test_a_bad_reference_table_is_an_input_error_before_any_work(tmp_path, monkeypatch):
    from tcdesign.data.io import InputError
    from tcdesign.screen.references import bundled_reference_path

    table = pd.read_csv(bundled_reference_path(), dtype={"id": str})
    train = table.kind == "train"
    table.loc[train, "id"] = "mine-" + table.index[train].astype(str)  # no JARVIS ids
    custom = tmp_path / "references.csv"
    table.to_csv(custom, index=False)
    computed = _counting(monkeypatch)
    records = [StructureRecord("al", fcc_al(4.04))]
    with pytest.raises(InputError, match="JARVIS id"):
        screen_records(records, tmp_path / "a", ScreenSettings(references=str(custom)), False)
    monkeypatch.setenv("MP_API_KEY", "not-a-key")
    monkeypatch.setitem(sys.modules, "mp_api", None)  # mp-api not installed
    with pytest.raises(InputError, match="mp-api"):
        screen_records(records, tmp_path / "b", ScreenSettings(hull_reference="mp"), False)
    missing = str(tmp_path / "known.csv")
    with pytest.raises(InputError, match="novelty_reference"):
        screen_records(records, tmp_path / "c", ScreenSettings(novelty_reference=missing), False)
    assert computed == []
    assert not any((tmp_path / name / PROGRESS_FILE).exists() for name in "abc")


def test_a_candidate_whose_references_or_models_fail_is_a_failed_row(tmp_path, monkeypatch):

    def no_sodium(composition, energy, settings, hull=None):
        if "Na" in composition:
            raise RuntimeError("Materials Project unreachable")
        return reference_energies(composition, energy, settings, hull)

    reference_energies = api.reference_energies
    monkeypatch.setattr(api, "reference_energies", no_sodium)
    records = [StructureRecord("al", fcc_al(4.04)), StructureRecord("nacl", rocksalt_nacl())]
    table = by_id(screen_records(records, tmp_path, ScreenSettings(relax=False), progress=False))
    assert table["al"].status == "ok"
    assert table["nacl"].status == "failed" and "unreachable" in table["nacl"].error
    # the relaxation was fine: a rerun computes the references again, without relaxing
    monkeypatch.setattr(api, "reference_energies", reference_energies)
    computed = _counting(monkeypatch)
    table = by_id(screen_records(records, tmp_path, ScreenSettings(relax=False), progress=False))
    assert computed == [] and table["nacl"].status == "ok"
    # a model that fails on one candidate
    load_gap_model = api.load_gap_model

    class Fussy:
        def __init__(self, *args):
            self.model = load_gap_model(*args)

        def predict(self, structures):
            if "Na" in structures[0].composition:
                raise ValueError("no sodium, please")
            return self.model.predict(structures)

    monkeypatch.setattr(api, "load_gap_model", Fussy)
    table = by_id(screen_records(records, tmp_path / "gap", ScreenSettings(relax=False), False))
    assert table["al"].status == "ok"
    assert table["nacl"].status == "failed" and "no sodium" in table["nacl"].error


def test_workers_get_an_absolute_output_folder(tmp_path, monkeypatch):
    folders: list[str] = []

    def recording(job):
        folders.append(job.out_dir)
        return screen_candidate(job)

    monkeypatch.setattr("tcdesign.screen.api.screen_candidate", recording)
    monkeypatch.chdir(tmp_path)
    records = [StructureRecord("al", fcc_al(4.04))]
    screen_records(records, "relative", ScreenSettings(relax=False), progress=False)
    assert folders == [str((tmp_path / "relative").resolve())]


def _done(structure: Structure, **values) -> dict:
    row = {
        "status": "ok", "error": "", "tc": 10.0, "tc_std": 1.0, "e_form": -0.1,
        "e_form_chgnet": -0.1, "gap": 0.0, "e_hull": 0.0, "p_metal": 0.9,
        "relaxed_structure": structure.as_dict(),
    }  # fmt: skip
    row.update(values)
    return row


def test_the_best_relaxed_copy_of_a_crystal_is_the_original():
    from tcdesign.screen.api import _finish

    al = fcc_al(4.04)
    records = [StructureRecord(rid, al) for rid in ("skipped", "low", "failing", "best")]
    finished = {
        "low": _done(al, tc=8.0),  # passes, lower Tc
        "failing": _done(al, tc=20.0, e_form=0.5),  # highest Tc, fails the formation energy
        "best": _done(al, tc=9.0),  # passes with the highest Tc
    }
    unrelaxed = {rid: (1.0, 0.1) for rid in ("skipped", "low", "failing", "best")}
    table = _finish(records, unrelaxed, finished, set(finished), ScreenSettings())
    rows = by_id(table)
    assert rows["skipped"].status == "skipped"
    assert pd.isna(rows["best"].duplicate_of) and rows["best"].passed
    for rid in ("skipped", "low", "failing"):
        assert rows[rid].duplicate_of == "best" and not rows[rid].passed
    assert rows["low"].rules_failed == "duplicate"


def test_repeated_ids_are_renamed_to_ids_no_other_row_has(tmp_path):
    records = [
        StructureRecord("a", fcc_al(4.04)),
        StructureRecord("a", rocksalt_nacl()),
        StructureRecord("a_2", mgb2()),
    ]
    table = screen_records(records, tmp_path, ScreenSettings(relax=False), progress=False)
    assert dict(zip(table.id, table.formula, strict=True)) == {
        "a": "Al", "a_3": "NaCl", "a_2": "MgB2",
    }  # fmt: skip


def test_ids_with_the_same_safe_file_name_get_distinct_relaxed_cifs(tmp_path):
    records = [StructureRecord("x 1", fcc_al(4.04)), StructureRecord("x_1", rocksalt_nacl())]
    out = tmp_path / "names"
    rows = by_id(screen_records(records, out, ScreenSettings(), progress=False))
    assert rows["x 1"].relaxed_cif != rows["x_1"].relaxed_cif
    assert Structure.from_file(out / rows["x 1"].relaxed_cif).composition.reduced_formula == "Al"
    assert Structure.from_file(out / rows["x_1"].relaxed_cif).composition.reduced_formula == "NaCl"


def test_nan_in_the_progress_file_comes_back_as_nan(tmp_path):
    records = [StructureRecord("al", fcc_al(4.04))]
    screen_records(records, tmp_path, ScreenSettings(relax=False), progress=False)
    path = tmp_path / PROGRESS_FILE
    row = json.loads(path.read_text())
    row["tc"] = None  # how a NaN Tc is stored (JSON has no NaN)
    path.write_text(json.dumps(row) + "\n")
    table = screen_records(records, tmp_path, ScreenSettings(relax=False), progress=False)
    assert table.status[0] == "ok" and math.isnan(table.tc[0])
    assert not table.passed[0] and "tc" in table.rules_failed[0].split(";")


class KilledError(Exception):
    """A kill of the process, simulated."""


def test_a_kill_while_writing_screened_csv_leaves_the_previous_table(tmp_path, monkeypatch):
    records = [StructureRecord("al", fcc_al(4.04))]
    screen_records(records, tmp_path, ScreenSettings(relax=False), progress=False)
    before = (tmp_path / "screened.csv").read_text()
    to_csv = pd.DataFrame.to_csv

    def killed_mid_write(self, path, *args, **kwargs):
        to_csv(self, path, *args, **kwargs)
        Path(path).write_text(Path(path).read_text()[:20])  # half written when the kill came
        raise KilledError

    monkeypatch.setattr(pd.DataFrame, "to_csv", killed_mid_write)
    with pytest.raises(KilledError):
        screen_records(records, tmp_path, ScreenSettings(relax=False), progress=False)
    assert (tmp_path / "screened.csv").read_text() == before


def test_the_device_reaches_chgnet_in_the_relaxation_and_the_energies(tmp_path, monkeypatch):
    """settings.device goes to every CHGNet call of a candidate (relax and static energies)."""
    from tcdesign.screen.candidate import CandidateJob
    from tcdesign.screen.relax import relax_structure as real_relax
    from tcdesign.screen.relax import static_energy_and_moment as real_static

    seen: list[str] = []

    def relax(structure, **kwargs):
        seen.append(kwargs["device"])
        return real_relax(structure, **kwargs)

    def static(structure, device="missing"):
        seen.append(device)
        return real_static(structure, device)

    monkeypatch.setattr(candidate_module, "relax_structure", relax)
    monkeypatch.setattr(candidate_module, "static_energy_and_moment", static)
    settings = ScreenSettings(device="cpu", max_steps=5)
    row = screen_candidate(CandidateJob("al", fcc_al(4.05), "al", str(tmp_path), settings))
    assert row["status"] == "ok" and seen and set(seen) == {"cpu"}


def test_candidates_that_pass_get_a_phonon_check_and_the_stable_rule_uses_it(
    screened, candidates, tmp_path, monkeypatch
):
    table, out = screened
    rows = by_id(table)
    # MgB2 passes the paper's rules and is dynamically stable; the others fail them unchecked
    assert rows["mgb2"].passed and rows["mgb2"].phonon_stable is True
    assert rows["mgb2"].phonon_min_freq_cm1 > -10.0 and rows["mgb2"].phonon_imaginary_fraction == 0
    for key in ("al", "nacl", "al-copy"):
        assert pd.isna(rows[key].phonon_stable) and pd.isna(rows[key].phonon_min_freq_cm1)
    assert (out / "phonons.jsonl").is_file()

    def unstable(structure, settings=None, device="cpu"):
        return {
            "phonon_min_freq_cm1": -150.0,
            "phonon_imaginary_fraction": 0.2,
            "phonon_stable": False,
            "phonon_error": "",
        }

    monkeypatch.setattr(phonons, "phonon_check", unstable)
    strict = ScreenSettings(relax=False, require_stable=True)
    table = screen_records(candidates[:3], tmp_path / "strict", strict, progress=False)
    mgb2_row = by_id(table)["mgb2"]
    assert mgb2_row.rules_failed == "stable" and not mgb2_row.passed
    assert mgb2_row.phonon_min_freq_cm1 == -150.0
    # the same folder without the rule passes it again, from the cached check
    monkeypatch.setattr(phonons, "phonon_check", None)  # would fail if called
    table = screen_records(
        candidates[:3], tmp_path / "strict", ScreenSettings(relax=False), progress=False
    )
    assert by_id(table)["mgb2"].passed and by_id(table)["mgb2"].phonon_stable is False
    # no check at all with phonons off
    table = screen_records(
        candidates[:3], tmp_path / "off", ScreenSettings(relax=False, phonons=False), progress=False
    )
    assert table.phonon_stable.isna().all()
