"""Benchmark the Tc predictor on the validation split: accuracy, uncertainty, throughput.

Writes benchmarks/results/predictor.json and prints a table. Usage:
    python benchmarks/predictor.py [--model PATH] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from tcdesign.data.io import read_structures
from tcdesign.predict.api import bundled_csv
from tcdesign.predict.ensemble import Ensemble, regression_metrics

RESULTS = Path(__file__).parent / "results" / "predictor.json"
THRESHOLD = 5.0  # K, the paper's screening rule


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _python_loop_seconds() -> float:
    """Seconds for a 10-million-step Python loop: a yardstick for comparing machines, since
    the same benchmark differs by 2x or more between the cloud machines this was run on."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return round(time.perf_counter() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="ensemble file (default: bundled)")
    parser.add_argument(
        "--members", type=int, default=None, help="use the first N members (default all)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best is kept)")
    parser.add_argument("--out", default=str(RESULTS), help="result JSON path")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    ensemble = Ensemble.load(args.model, args.members)
    train = [r for r in read_structures(bundled_csv("train"), ["tc"], True) if r.ok]
    val = [r for r in read_structures(bundled_csv("val"), ["tc"], True) if r.ok]
    structures = [r.structure for r in val]
    truth = np.array([r.targets["tc"] for r in val])
    mean, std = ensemble.predict(structures)
    metrics = regression_metrics(mean, truth, std, THRESHOLD)
    train_mean = float(np.mean([r.targets["tc"] for r in train]))
    metrics["mae_train_mean_baseline"] = float(np.mean(np.abs(truth - train_mean)))

    timings = []
    for _ in range(args.repeats):  # graph building (and any pretrained features) included
        started = time.perf_counter()
        ensemble.predict(structures)
        timings.append(time.perf_counter() - started)
    result = {
        "model": args.model or "bundled",
        "members": len(ensemble.members),
        "pretrained_features": ensemble.config.pretrained_features,
        "val": metrics,
        "throughput_structures_per_s": len(structures) / min(timings),
        "machine": {
            "cpus": torch.get_num_threads(),
            "cpu_model": _cpu_model(),
            "python_loop_10M_s": _python_loop_seconds(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))

    rows = [
        ("val MAE (K)", f"{metrics['mae']:.3f}"),
        ("val MAE, train-mean baseline (K)", f"{metrics['mae_train_mean_baseline']:.3f}"),
        ("val RMSE (K)", f"{metrics['rmse']:.3f}"),
        ("val R^2", f"{metrics['r2']:.3f}"),
        (f"precision at Tc > {THRESHOLD:g} K", f"{metrics['precision']:.3f}"),
        (f"recall at Tc > {THRESHOLD:g} K", f"{metrics['recall']:.3f}"),
        ("val errors within 2 std", f"{metrics['within_2std']:.3f}"),
        ("throughput (structures/s)", f"{result['throughput_structures_per_s']:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
