"""Does the DFT density of states at the Fermi level rank JARVIS Tc?

McMillan's coupling is lambda = N(E_F) <I^2> / (M <omega^2>). CHGNet phonons give the phonon
half cheaply and add about 0.1 K to the Tc predictor in cross-validation
(``predictor_phonons.py``); the electronic half needs DFT. This runs one coarse Quantum ESPRESSO
scf per bundled crystal (:func:`tcdesign.verify.fermi.fermi_dos`, SSSP pseudopotentials from
``--pseudo-dir``) and measures N(E_F) from the eigenvalues at broadenings of 0.05, 0.1 and 0.2 eV,
in states/eV per atom.

It then reports the Spearman correlation of N(E_F) with the JARVIS Tc and, once at least
``MIN_TRAIN`` training crystals are done, whether N(E_F) adds to the cheap features: gradient
boosting on log(1 + Tc) (the settings of ``predictor_phonons.py``) with the composition
descriptors, the CHGNet phonon descriptors (``phonon_features.csv``) and N(E_F), alone and
together, scored by 5-fold cross-validation on the finished training crystals and, fitted on them,
on the finished val crystals; and the > 5 K rule of the bundled ensemble on val with such a model
as a second condition, as a screen could apply it to the few candidates that pass (needs
scikit-learn, ``pip install -e '.[bench]' torch==2.13.0``; checked before any scf runs, so that
hours of DFT never end in an ImportError). The threshold of the screen's N(E_F) rule is set here
too, on the training crystals the composition model flags above 5 K out of fold (about 170 of the
846 in some shuffle): only those need their scf for it, and ``--list-flagged`` lists them so that
they can run first. The rule is also scored, not tuned, with the out-of-fold Tc of ALIGNN members
(``predictor_weights.py``'s results) as the first stage, which is closer to the bundled ensemble. A
crystal takes 30 s (median; 1.5 min mean, up to 20 min) on one core, so all 951 take about a day of
one core: results stream to ``--cache`` (JSON lines, one per crystal, committed), and a rerun
continues where the last one stopped. Writes ``benchmarks/results/fermi_dos.json`` and prints a
table.

    python benchmarks/fermi_dos.py --pseudo-dir DIR [--split val] [--limit 20] [--work DIR]
    python benchmarks/fermi_dos.py --pseudo-dir DIR --shard 1/2 &   # a second core
    python benchmarks/fermi_dos.py --pseudo-dir DIR --list-flagged > ids.txt
    python benchmarks/fermi_dos.py --pseudo-dir DIR --split train --ids ids.txt  # those first
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from tcdesign.data.io import read_structures
from tcdesign.predict.api import bundled_csv
from tcdesign.verify.fermi import BROADENINGS_EV as BROADENINGS
from tcdesign.verify.fermi import ECUT_RY as ECUT
from tcdesign.verify.fermi import K_SPACING, fermi_dos

RESULTS = Path(__file__).parent / "results" / "fermi_dos.json"
CACHE = Path(__file__).parent / "results" / "fermi_dos.jsonl"
MIN_TRAIN = 100  # finished training crystals before the feature study runs
PHONONS = Path(__file__).parent / "results" / "phonon_features.csv"


def _nef_columns(entries: list[dict]) -> np.ndarray:
    """log N(E_F) (states/eV/atom) at each broadening, one row per crystal."""
    return np.log([[max(e[f"nef_{s:g}"], 1e-3) for s in BROADENINGS] for e in entries])


def _formed_metal(row: dict) -> bool:
    """The screen's other rules on a crystal's JARVIS labels: E_form < 0, gap < 0.05 eV (a
    crystal without labels fails, as NaN fails a rule)."""
    try:
        eform = float(row["formation_energy_peratom"] or "nan")
        gap = float(row["optb88vdw_bandgap"] or "nan")
    except KeyError:
        return False
    return eform < 0 and gap < 0.05


def feature_study(done: dict[str, dict]) -> dict:
    """Does N(E_F) add to the composition and CHGNet phonon descriptors? Gradient boosting on the
    crystals with N(E_F): 5-fold CV on train (5 shuffles), fitted on train and scored on val, and
    the ensemble's > 5 K rule on val with each model above 3 K as a second condition."""
    import csv

    from predictor_phonons import PHONON_COLUMNS
    from predictor_sevennet import THRESHOLD, boosting, scores
    from sklearn.model_selection import KFold

    from tcdesign.predict.descriptors import descriptors
    from tcdesign.predict.ensemble import Ensemble

    with PHONONS.open() as handle:
        phonons = {row["material_id"]: row for row in csv.DictReader(handle)}
    with (Path(bundled_csv("train")).parent / "dft_labels.csv").open() as handle:
        labels = {row["material_id"]: row for row in csv.DictReader(handle)}

    data: dict[str, dict] = {}
    for split in ("train", "val"):
        records = [r for r in read_structures(bundled_csv(split), ["tc"], True) if r.ok]
        keep = [r for r in records if "error" not in done.get(r.id, {"error": 1})]
        keep = [r for r in keep if r.id in phonons]
        entries = [done[r.id] for r in keep]
        structures = [r.structure for r in keep]
        data[split] = {
            "y": np.array([r.targets["tc"] for r in keep]),
            "desc": descriptors("composition", structures).astype(float),
            "phon": np.array([[float(phonons[r.id][c]) for c in PHONON_COLUMNS] for r in keep]),
            "nef": _nef_columns(entries),
            "structures": structures,
        }
    train, val = data["train"], data["val"]
    ensemble_tc = Ensemble.load(None).predict(val["structures"])[0]
    positive = val["y"] > THRESHOLD

    def rule(flagged: np.ndarray) -> dict:
        hits = int((flagged & positive).sum())
        return {
            "passed": int(flagged.sum()),
            "precision": round(hits / max(int(flagged.sum()), 1), 4),
            "recall": round(hits / max(int(positive.sum()), 1), 4),
        }

    study: dict = {
        "train_crystals": len(train["y"]),
        "val_crystals": len(val["y"]),
        "val_ensemble_above_5K": rule(ensemble_tc > THRESHOLD),
        "models": {},
    }
    out_of_fold: dict[str, list[np.ndarray]] = {}  # one per shuffle
    for name, columns in (
        ("composition", ["desc"]),
        ("N(E_F)", ["nef"]),
        ("composition+N(E_F)", ["desc", "nef"]),
        ("composition+phonons", ["desc", "phon"]),
        ("composition+phonons+N(E_F)", ["desc", "phon", "nef"]),
    ):
        x_train = np.hstack([train[c] for c in columns])
        x_val = np.hstack([val[c] for c in columns])
        target = np.log1p(train["y"])
        cv = []
        for seed in range(5):
            cross = np.zeros(len(target))
            for fit, held in KFold(5, shuffle=True, random_state=seed).split(x_train):
                model = boosting(seed, max_iter=300, learning_rate=0.04)
                cross[held] = model.fit(x_train[fit], target[fit]).predict(x_train[held])
            cv.append(scores(np.expm1(cross).clip(0), train["y"]))
            out_of_fold.setdefault(name, []).append(np.expm1(cross).clip(0))
        fitted = boosting(0, max_iter=300, learning_rate=0.04).fit(x_train, target)
        predicted = np.expm1(fitted.predict(x_val)).clip(0)
        study["models"][name] = {
            "cv5_train": {k: round(float(np.mean([r[k] for r in cv])), 4) for k in cv[0]},
            "val": scores(predicted, val["y"]),
            "val_ensemble_above_5K_and_this_above_3K": rule(
                (ensemble_tc > THRESHOLD) & (predicted > 3.0)
            ),
        }
    # the same second stage out of fold on train, where many more crystals are above 5 K: the
    # composition model above 5 K stands in for the ensemble (its out-of-fold predictions), each
    # model above 3 K beside it, the same shuffle for both; mean over the 5 shuffles
    train_positive = train["y"] > THRESHOLD
    for name, row in study["models"].items():
        stages = []
        for first, second in zip(out_of_fold["composition"], out_of_fold[name], strict=True):
            flagged = (first > THRESHOLD) & (second > 3.0)
            hits = int((flagged & train_positive).sum())
            stages.append(
                (flagged.sum(), hits / max(flagged.sum(), 1), hits / max(train_positive.sum(), 1))
            )
        mean = np.mean(stages, axis=0)
        row["train_oof_composition_above_5K_and_this_above_3K"] = {
            "passed": round(float(mean[0]), 1),
            "precision": round(float(mean[1]), 4),
            "recall": round(float(mean[2]), 4),
        }
    study["nef_threshold_rule"] = _threshold_rule(done, labels, val, ensemble_tc, rule)
    return study


THRESHOLD_GRID = np.round(np.arange(0.2, 2.0001, 0.05), 2)  # states/eV/atom
SHUFFLES = 5


def composition_out_of_fold(structures: list, tc: np.ndarray) -> list[np.ndarray]:
    """Out-of-fold Tc of the composition-descriptor gradient boosting on log(1 + Tc), 5-fold,
    one array per shuffle: a stand-in for the ensemble's > 5 K flags, which cannot be had out of
    fold. Needs no DFT, so it runs on the whole training split."""
    from predictor_sevennet import boosting
    from sklearn.model_selection import KFold

    from tcdesign.predict.descriptors import descriptors

    x = descriptors("composition", structures).astype(float)
    target = np.log1p(tc)
    shuffles = []
    for seed in range(SHUFFLES):
        cross = np.zeros(len(target))
        for fit, held in KFold(5, shuffle=True, random_state=seed).split(x):
            model = boosting(seed, max_iter=300, learning_rate=0.04)
            cross[held] = model.fit(x[fit], target[fit]).predict(x[held])
        shuffles.append(np.expm1(cross).clip(0))
    return shuffles


def _threshold_rule(done: dict, labels: dict, val: dict, ensemble_tc, rule) -> dict:
    """The simplest second stage: pass a candidate only if N(E_F) (0.2 eV) >= t. The threshold is
    set on train: every training crystal is flagged by the composition model's out-of-fold Tc
    above 5 K (:func:`composition_out_of_fold`), so only the flagged ones need N(E_F); on a
    grid of 0.05 states/eV/atom, the t of highest precision (mean over the shuffles) that keeps at
    least half of their true positives. Then applied to the val crystals the bundled ensemble
    puts above 5 K. The curve over the grid is reported too, and how many flagged crystals still
    lack N(E_F) (they are left out until their scf is done)."""
    threshold = 5.0
    records = [r for r in read_structures(bundled_csv("train"), ["tc"], True) if r.ok]
    tc = np.array([r.targets["tc"] for r in records])
    flag_tc = composition_out_of_fold([r.structure for r in records], tc)
    sigma = f"nef_{0.2:g}"
    nef_train = np.array(
        [done[r.id][sigma] if sigma in done.get(r.id, {}) else np.nan for r in records]
    )
    formed_metal = np.array([_formed_metal(labels.get(r.id, {})) for r in records])
    nef_val = np.exp(val["nef"][:, BROADENINGS.index(0.2)])
    true = tc > threshold
    known = ~np.isnan(nef_train)
    flagged_any = np.any([flag > threshold for flag in flag_tc], axis=0)

    def on_train(t: float) -> dict:
        stats = []
        for flag in flag_tc:
            flagged = (flag > threshold) & known
            kept = flagged & (nef_train >= t)
            stats.append(
                (
                    kept.sum(),
                    (kept & true).sum() / max(kept.sum(), 1),
                    (kept & true).sum() / max((flagged & true).sum(), 1),
                )
            )
        mean = np.mean(stats, axis=0)
        return {
            "passed": round(float(mean[0]), 1),
            "precision": round(float(mean[1]), 4),
            "kept_true_positives": round(float(mean[2]), 4),
        }

    def full_rule_like(t: float) -> dict:
        """As the screen's full rule: also E_form < 0 and gap < 0.05 eV (JARVIS labels)."""
        stats = []
        for flag in flag_tc:
            kept = (flag > threshold) & known & formed_metal & (nef_train >= t)
            stats.append((kept.sum(), (kept & true).sum() / max(kept.sum(), 1)))
        mean = np.mean(stats, axis=0)
        return {"passed": round(float(mean[0]), 1), "precision": round(float(mean[1]), 4)}

    def alignn_first_stage(t: float) -> dict | None:
        """The rule with the ALIGNN members' out-of-fold Tc above 5 K as the first stage, a
        closer stand-in for the bundled ensemble than the composition model (one member per
        fold, the bundled settings; ``predictor_weights.py``). Not used to choose t."""
        alignn = alignn_out_of_fold(len(records))
        if alignn is None:
            return None
        flagged = alignn > threshold
        rows = {}
        for name, extra in (("tc", True), ("full_rule_jarvis_labels", formed_metal)):
            base = flagged & extra
            kept = base & known & (nef_train >= t)
            rows[name] = {
                "passed": int(base.sum()),
                "precision": round(float(true[base].mean()), 4),
                "passed_with_nef": int(kept.sum()),
                "precision_with_nef": round(float(true[kept].mean()), 4),
                "kept_true_positives": round(float((kept & true).sum() / (base & true).sum()), 4),
                "flagged_without_nef": int((base & ~known).sum()),
            }
        return rows

    curve = {f"{t:g}": on_train(t) for t in THRESHOLD_GRID}
    allowed = [t for t in THRESHOLD_GRID if curve[f"{t:g}"]["kept_true_positives"] >= 0.5]
    best = max(allowed, key=lambda t: curve[f"{t:g}"]["precision"], default=0.0)
    return {
        "threshold_states_per_eV_atom": float(best),
        "train_crystals": len(records),
        "train_flagged_in_any_shuffle": int(flagged_any.sum()),
        "train_flagged_without_nef": int((flagged_any & ~known).sum()),
        "train_out_of_fold_composition_above_5K": on_train(0.0),
        "train_out_of_fold_and_nef_above_t": on_train(best),
        "train_out_of_fold_curve": curve,
        "train_out_of_fold_full_rule_jarvis_labels": full_rule_like(0.0),
        "train_out_of_fold_full_rule_jarvis_labels_and_nef_above_t": full_rule_like(best),
        "train_out_of_fold_alignn_first_stage": alignn_first_stage(best),
        "val_ensemble_above_5K_and_nef_above_t": rule(
            (ensemble_tc > threshold) & (nef_val >= best)
        ),
    }


WEIGHTS = Path(__file__).parent / "results" / "predictor_weights.json"


def alignn_out_of_fold(n: int) -> np.ndarray | None:
    """Out-of-fold Tc of the ALIGNN members of ``predictor_weights.py`` (unweighted loss, one
    member per fold) for the ``n`` training crystals, or None without its results."""
    if not WEIGHTS.is_file():
        return None
    tc = np.full(n, np.nan)
    for name, member in json.loads(WEIGHTS.read_text())["members"].items():
        if name.startswith("unweighted"):
            tc[member["held_out"]] = member["held_out_predictions"]
    return None if np.isnan(tc).any() else tc


def flagged_ids() -> list[str]:
    """The training crystals the threshold study needs, most often flagged first."""
    records = [r for r in read_structures(bundled_csv("train"), ["tc"], True) if r.ok]
    tc = np.array([r.targets["tc"] for r in records])
    shuffles = composition_out_of_fold([r.structure for r in records], tc)
    count = np.sum([flag > 5.0 for flag in shuffles], axis=0)
    order = np.argsort(-count, kind="stable")
    return [records[k].id for k in order if count[k] > 0]


def _read_cache(path: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            done[entry["id"]] = entry
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pseudo-dir", type=Path, required=True, help="SSSP-style library")
    parser.add_argument("--split", choices=["val", "train"], nargs="+", default=["val", "train"])
    parser.add_argument("--limit", type=int, default=None, help="crystals per split at most")
    parser.add_argument("--work", type=Path, default=Path("runs/fermi_dos"), help="scratch")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--shard",
        default="0/1",
        help="I/N: run only every N-th crystal from the I-th, so that N processes can share "
        "one cache (each appends whole lines); default 0/1",
    )
    parser.add_argument(
        "--ids",
        type=Path,
        default=None,
        help="a file of material ids, one per line: run only these, in the file's order (for "
        "example the crystals the threshold study needs first); default every crystal",
    )
    parser.add_argument(
        "--list-flagged",
        action="store_true",
        help="print the training crystals the threshold study needs (flagged above 5 K out of "
        "fold by the composition model in any shuffle), most often flagged first, and exit",
    )
    args = parser.parse_args()
    if importlib.util.find_spec("sklearn") is None:
        sys.exit(
            "fermi_dos.py needs scikit-learn for its feature study: "
            "pip install -e '.[bench]' torch==2.13.0"
        )
    if args.list_flagged:
        print("\n".join(flagged_ids()))
        return
    shard, shards = (int(v) for v in args.shard.split("/"))
    if not 0 <= shard < shards:
        parser.error(f"--shard {args.shard}: need 0 <= I < N")

    done = _read_cache(args.cache)
    with args.cache.open("a") as handle:
        for split in args.split:
            records = read_structures(bundled_csv(split), targets=["tc"])
            records = [r for r in records if r.ok][: args.limit]
            if args.ids is not None:
                rank = {i: k for k, i in enumerate(args.ids.read_text().split())}
                records = sorted((r for r in records if r.id in rank), key=lambda r: rank[r.id])
            for record in records[shard::shards]:
                if record.id in done:
                    continue
                entry = {"id": record.id, "split": split, "formula": record.formula}
                entry["tc_jarvis"] = record.targets.get("tc")
                try:
                    entry.update(
                        fermi_dos(record.structure, args.pseudo_dir, args.work / record.id)
                    )
                except Exception as exc:  # noqa: BLE001 - recorded, the next crystal runs
                    entry["error"] = f"{type(exc).__name__}: {exc}"
                handle.write(json.dumps(entry) + "\n")
                handle.flush()
                done[record.id] = entry
                print(json.dumps(entry), flush=True)

    done = _read_cache(args.cache)  # with the other shards' crystals
    result: dict = {"settings": {"k_spacing": K_SPACING, "ecut_ry": ECUT}, "splits": {}}
    for split in args.split:
        rows = [e for e in done.values() if e["split"] == split and "error" not in e]
        summary: dict = {
            "crystals": len(rows),
            "failed": sum(1 for e in done.values() if e["split"] == split and "error" in e),
        }
        if len(rows) >= 3:
            tc = [e["tc_jarvis"] for e in rows]
            for sigma in BROADENINGS:
                rho = spearmanr([e[f"nef_{sigma:g}"] for e in rows], tc).statistic
                summary[f"spearman_nef_{sigma:g}"] = float(rho)
            summary["seconds_median"] = float(np.median([e["seconds"] for e in rows]))
        result["splits"][split] = summary
        print(split, json.dumps(summary))
    trained = sum(1 for e in done.values() if e["split"] == "train" and "error" not in e)
    if trained >= MIN_TRAIN:
        study = feature_study(done)
        result["feature_study"] = study
        print(
            f"{'features':28s} {'CV MAE':>7s} {'CV p@r.5':>8s} {'val MAE':>7s} "
            "second stage: val | train out of fold"
        )
        for name, row in study["models"].items():
            second = row["val_ensemble_above_5K_and_this_above_3K"]
            oof = row["train_oof_composition_above_5K_and_this_above_3K"]
            print(
                f"{name:28s} {row['cv5_train']['mae_K']:7.3f} "
                f"{row['cv5_train']['best_precision_at_recall_0.5']:8.2f} "
                f"{row['val']['mae_K']:7.3f} {second['precision']:6.2f} ({second['passed']} pass) "
                f"| {oof['precision']:.2f} ({oof['passed']:.0f} pass, recall {oof['recall']:.2f})"
            )
        simple = study["nef_threshold_rule"]
        val_rule = simple["val_ensemble_above_5K_and_nef_above_t"]
        before = simple["train_out_of_fold_full_rule_jarvis_labels"]
        after = simple["train_out_of_fold_full_rule_jarvis_labels_and_nef_above_t"]
        print(
            "train out of fold, composition > 5 K, JARVIS E_form < 0 and gap < 0.05 eV: "
            f"{before['passed']:.0f} pass at precision {before['precision']:.2f}; with N(E_F) "
            f">= t: {after['passed']:.0f} at {after['precision']:.2f}"
        )
        alignn = simple["train_out_of_fold_alignn_first_stage"]
        for name, row in (alignn or {}).items():
            print(
                f"train out of fold, ALIGNN > 5 K ({name}): {row['passed']} pass at precision "
                f"{row['precision']:.2f}; with N(E_F) >= t: {row['passed_with_nef']} at "
                f"{row['precision_with_nef']:.2f}, keeping {row['kept_true_positives']:.2f} of "
                f"the true positives ({row['flagged_without_nef']} lack N(E_F))"
            )
        print(
            f"N(E_F) >= {simple['threshold_states_per_eV_atom']:.3f} states/eV/atom (set on train) "
            f"beside the ensemble > 5 K on val: {val_rule['passed']} pass, precision "
            f"{val_rule['precision']:.2f}, recall {val_rule['recall']:.2f}"
        )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
