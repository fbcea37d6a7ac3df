"""One structure through Quantum ESPRESSO: relax -> scf -> ph.x -> q2r -> matdyn -> Tc.

Layout of ``out`` (the run folder):

- ``result.json`` (always written, also on failure), ``alpha2F.csv``, ``phonon_dos.csv``,
  ``structure_input.cif``, ``structure_relaxed.cif``;
- ``qe/``: every input (``<step>.in``) and log (``<step>.out``, ``<step>.err``), the scratch
  folder ``qe/tmp``, ph.x's ``dyn*`` and ``elph_dir``, matdyn's ``a2F.dos*``;
- ``qe/markers/<step>.done``: JSON written when a step completes. Each holds a hash of the step's
  input chained with the hashes of the steps before it, so a rerun skips a step only when neither
  it nor anything upstream changed; a run killed mid-step redoes that step from its start. ph.x's
  own restart (``recover=.true.``) is not used: in QE 6.7 it cannot resume a q-point of an
  electron-phonon run (it fails on its own elph files, and a q-point killed before its first
  representation was done resumed with wrong dynamical matrices when we tried it on fcc Al), so
  a q-point is the unit of resumption.

Steps: ``relax`` (pw.x vc-relax, optional), ``magnetism`` (a spin-polarised pw.x scf from a
ferromagnetic start, for crystals with d- or f-block elements; a crystal that keeps a moment
stops here with status 'magnetic'; a side branch of the hash chain), ``scf_fit`` (pw.x on the
dense k-grid with la2F), ``scf`` (pw.x on the k-grid of ph.x), ``ph_q1`` ... ``ph_qN``
(electron_phonon='interpolated', one ph.x run per irreducible q-point, ``start_q = last_q``),
``q2r``, ``matdyn`` (phonon DOS and alpha2F on a fine mesh) and ``lambda_x`` (QE's lambda.x on
the same run, kept as a cross-check, not used for the headline values).

Why one ph.x run per q-point: a finished q-point is then a step with its own marker and small
text outputs (``dyn<i>``, ``elph_dir/*.<i>``, ``ph_q<i>.out``), so hours of DFPT survive losing
the scratch folder (a new machine, a cluster job whose scratch is purged, a copy of the run
folder without ``qe/tmp``): the next call runs ``scf_fit`` and ``scf`` again to rebuild the
scratch (same inputs, same hashes) and computes only the q-points still missing. The results
equal those of one ph.x run over the whole grid to DFPT's convergence threshold (checked on
fcc Al: lambda within 0.2 %).

Minimum frequency: over matdyn's mesh (acoustic sum rule imposed) and ph.x's q-grid without the
three acoustic modes at Gamma (raw DFPT there has no sum rule). ``dynamically_stable`` is false
when it is below ``-imaginary_tolerance_cm1`` (default 10 cm^-1, QE's convention of negative
numbers for imaginary frequencies): smaller negatives are interpolation noise near Gamma.
With ``stop_if_unstable`` each q-point is checked as it finishes (the same rule without matdyn),
and the first one below the tolerance ends the run with status 'unstable'.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from tcdesign import jsonio
from tcdesign.verify import inputs, parsers
from tcdesign.verify.eliashberg import (
    RY_TO_CM1,
    RY_TO_K,
    broadening_result,
    summarize_broadenings,
)
from tcdesign.verify.pseudo import (
    Pseudopotential,
    PseudopotentialError,
    choose_pseudopotentials,
    default_pseudo_dir,
)
from tcdesign.verify.settings import VerifySettings

REQUIRED_PROGRAMS = ("pw.x", "ph.x", "q2r.x", "matdyn.x")
CM1_PER_THZ = 33.35641
POLL_SECONDS = 30.0  # how often a running ph.x log is read for progress


class QEError(RuntimeError):
    """A QE step that failed, timed out or could not start; ``kind`` classifies it."""

    def __init__(self, step: str, message: str, kind: str = "qe_failed") -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.kind = kind


class DynamicallyUnstableError(RuntimeError):
    """A q-point has an imaginary mode and ``stop_if_unstable`` is set: no Tc is computed."""

    def __init__(self, q_index: int, min_freq_cm1: float, computed: int, total: int) -> None:
        self.q_index = q_index
        self.min_freq_cm1 = min_freq_cm1
        self.computed = computed
        left = total - computed
        super().__init__(
            f"dynamically unstable: q-point {q_index} of {total} has a mode at "
            f"{min_freq_cm1:.1f} cm^-1 (imaginary; QE writes them negative); the {left} "
            f"q-point{'s' if left != 1 else ''} still to compute, the force constants and Tc "
            "were skipped (stop_if_unstable; a rerun without it continues from the q-points "
            "done)"
        )


class MagneticCrystalError(RuntimeError):
    """The spin-polarised check found a moment: no non-spin-polarised phonons for this crystal."""


@dataclass
class EPCResult:
    """What ``result.json`` holds; ``status`` is 'ok', 'magnetic' (the crystal keeps a magnetic
    moment, so no electron-phonon run), 'unstable' (an imaginary mode stopped the phonons, with
    ``stop_if_unstable``) or 'error'; ``error`` says why when it is not 'ok'."""

    status: str
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "error": self.error, **self.data}


def missing_programs(np_ranks: int = 1) -> list[str]:
    """QE programs (and mpirun when ``np_ranks`` > 1) that are not on PATH."""
    needed = list(REQUIRED_PROGRAMS) + (["mpirun"] if np_ranks > 1 else [])
    return [name for name in needed if shutil.which(name) is None]


def primitive_cell(structure: Structure) -> Structure:
    """Standard primitive cell (fewer atoms, symmetric grids); the input when spglib fails."""
    try:
        return SpacegroupAnalyzer(structure, symprec=1e-3).get_primitive_standard_structure()
    except Exception:  # spglib raises several types on odd cells; the input cell still works
        return structure


def _hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


# A zero printed with a sign ("-0.0000000000"): which sign a coordinate of zero gets depends on
# rounding noise (a numpy or pymatgen release, the CPU), not on the physics.
_SIGNED_ZERO = re.compile(r"(?<![\w.])-(0(?:\.0*)?)(?![\w.])")
_PSEUDO_DIR = re.compile(r"(pseudo_dir\s*=\s*)'[^']*'")


def unsigned_zeros(text: str) -> str:
    """``text`` with every number that prints as a negative zero written without its sign."""
    return _SIGNED_ZERO.sub(r"\1", text)


def pseudo_fingerprint(pseudos: dict[str, Pseudopotential]) -> str:
    """A digest of the pseudopotential files (element, file name and contents) a run uses."""
    digest = hashlib.sha256()
    for element in sorted(pseudos):
        digest.update(f"{element} {pseudos[element].filename}\0".encode())
        digest.update(pseudos[element].path.read_bytes())
    return digest.hexdigest()[:16]


def _environment(np_ranks: int) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if np_ranks > 1 and hasattr(os, "geteuid") and os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


class StepRunner:
    """Runs QE programs in one folder with markers, logs, mpirun and timeouts."""

    def __init__(
        self,
        workdir: Path,
        np_ranks: int = 1,
        timeout_s: float = 3600.0,
        report: Callable[[str], None] | None = None,
        poll_s: float = POLL_SECONDS,
    ) -> None:
        """``report``: called with one line of progress (a step starts, ends or is reused; ph.x
        finishes a representation of a q-point), or None for silence; ``timeout_s``: the limit
        of each step (each q-point for ph.x); ``poll_s``: how often a running ph.x log is read."""
        self.workdir = workdir
        self.report = report or (lambda message: None)
        self.poll_s = poll_s
        self.markers = workdir / "markers"
        self.np_ranks = np_ranks
        self.timeout_s = timeout_s
        self.chain = ""  # hash of everything upstream
        self.aliases: dict[str, str] = {}  # see key()
        self._running: set[subprocess.Popen[bytes]] = set()  # QE processes of any thread
        self.lock = threading.Lock()
        self.timings: dict[str, float] = {}
        self.skipped: list[str] = []
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.markers.mkdir(exist_ok=True)

    def done(self, step: str, input_text: str) -> bool:
        """True when ``step`` completed earlier with this input and this upstream."""
        marker = self.markers / f"{step}.done"
        if not marker.exists():
            return False
        stored = self._stored_hash(step)
        if stored is None:
            return False
        return stored == self.key(input_text) or self._same_as_before(step, input_text, stored)

    def _stored_hash(self, step: str) -> str | None:
        try:
            return json.loads((self.markers / f"{step}.done").read_text()).get("hash")
        except (OSError, json.JSONDecodeError, AttributeError):
            return None

    def _dealias(self, input_text: str) -> str:
        for text, meaning in self.aliases.items():
            input_text = input_text.replace(text, meaning)
        return input_text

    def key(self, input_text: str) -> str:
        """The hash of a step with this input after everything upstream. Each ``aliases``
        string in the input (the absolute pseudopotential folder) is replaced by what it stands
        for (the files' contents), so that a run folder moved to a machine that keeps the same
        pseudopotentials elsewhere reuses its finished steps; negative zeros count as zeros."""
        return _hash(self.chain, unsigned_zeros(self._dealias(input_text)))

    def _same_as_before(self, step: str, input_text: str, stored: str) -> bool:
        """True when the step's input on disk is the one its marker was written for (hashed as
        before zeros lost their signs, and with its pseudopotential folder, wherever that was,
        standing for the current files) and differs from ``input_text`` only in the signs of
        zeros: a run folder from another machine, or from before that rule, whose coordinates
        of zero were printed with another sign."""
        try:
            before = (self.workdir / f"{step}.in").read_text()
        except OSError:
            return False
        if self.aliases:
            folder = next(iter(self.aliases))
            before = _PSEUDO_DIR.sub(lambda m: m.group(1) + folder, before)
        before = self._dealias(before)
        now = self._dealias(input_text)
        return _hash(self.chain, before) == stored and unsigned_zeros(before) == unsigned_zeros(now)

    def finished(self, step: str, input_text: str) -> bool:
        """True when :meth:`run` would reuse ``step``: done with this input and upstream, and
        its log still on disk."""
        return self.done(step, input_text) and (self.workdir / f"{step}.out").exists()

    def run(
        self,
        step: str,
        program: str,
        input_text: str,
        *,
        parallel: bool = False,
        stdin: bool = False,
        check_job_done: bool = True,
        step_limit_ok: bool = False,
        branch: bool = False,
        outputs: Sequence[str] = (),
        force: bool = False,
        key_input: str | None = None,
    ) -> str:
        """Run ``program`` on ``input_text`` unless its marker says it is done; return its log.

        A step whose earlier attempt was interrupted runs again from its start.
        ``step_limit_ok``: pw.x reaching ``nstep`` (exit status 3 after JOB DONE) is a finished
        step, not a failure (a relaxation that keeps its last geometry). ``branch``: a side step
        (the magnetism check) whose hash depends on what is upstream but which leaves the chain
        of the steps after it unchanged, so that adding or dropping it never makes a finished
        run compute its phonons again. ``outputs``: glob patterns of files the step writes as it
        goes (ph.x's dynamical matrices), removed before it runs so that files of an earlier or
        interrupted run neither count as progress nor linger beside the new ones. ``force``: run
        even when the marker says the step is done (to rebuild scratch files a later step
        needs). ``key_input``: the input the step is known by (hashed for its marker) when the
        one run differs only in where its scratch goes (a q-point computed beside others in a
        folder of its own).
        """
        key_input = input_text if key_input is None else key_input
        key = self.key(key_input)
        marker = self.markers / f"{step}.done"
        log = self.workdir / f"{step}.out"
        if not force and self.finished(step, key_input):
            self.skipped.append(step)
            self.timings[step] = json.loads(marker.read_text()).get("seconds", 0.0)
            self.report(f"{step}: finished earlier, reused")
            if not branch:  # the hash the later steps' markers were written after
                self.chain = self._stored_hash(step) or key
            return log.read_text(errors="replace")
        marker.unlink(missing_ok=True)
        if step in self.skipped:  # reused earlier in this call, now run again (force)
            self.skipped.remove(step)
        started = self.markers / f"{step}.started"
        interrupted = started.exists() and started.read_text().strip() == key
        started.write_text(key)
        self._remove(outputs)
        self.report(
            f"{step} ({program}) "
            + ("interrupted earlier, started again" if interrupted else "started")
        )
        seconds, output = self._execute(step, program, input_text, parallel, stdin, step_limit_ok)
        problem = parsers.qe_failure(output) if check_job_done else None
        if problem is not None:
            raise QEError(step, f"{problem} (log: {log})")
        marker.write_text(json.dumps({"hash": key, "seconds": round(seconds, 3)}))
        started.unlink(missing_ok=True)
        self.timings[step] = seconds
        self.report(f"{step} finished in {duration(seconds)}")
        if not branch:
            self.chain = key
        return output

    def stop_all(self) -> None:
        """End every QE step running in any thread (an interrupt of the thread that waits on
        them)."""
        with self.lock:
            running = list(self._running)
        for process in running:
            _end_group(process)

    def _remove(self, patterns: Sequence[str]) -> None:
        for pattern in patterns:
            for path in self.workdir.glob(pattern):
                if path.is_file():
                    path.unlink(missing_ok=True)

    def _execute(
        self,
        step: str,
        program: str,
        text: str,
        parallel: bool,
        stdin: bool,
        step_limit_ok: bool = False,
    ) -> tuple[float, str]:
        (self.workdir / f"{step}.in").write_text(text)
        command = [program] if stdin else [program, "-in", f"{step}.in"]
        if parallel and self.np_ranks > 1:
            command = ["mpirun", "-np", str(self.np_ranks), *command]
        if shutil.which(command[0]) is None:
            raise QEError(step, f"{command[0]} not found on PATH", kind="qe_not_found")
        (self.workdir / "CRASH").unlink(missing_ok=True)
        log = self.workdir / f"{step}.out"
        start = time.perf_counter()
        with (
            open(log, "w") as out,
            open(self.workdir / f"{step}.err", "w") as err,
            open(self.workdir / f"{step}.in") as source,
        ):
            process = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdin=source if stdin else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=_environment(self.np_ranks),
                start_new_session=True,  # its own process group, so a timeout ends mpirun's ranks
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            with self.lock:
                self._running.add(process)
            try:
                self._wait(process, step, start)
            except subprocess.TimeoutExpired:
                _end_group(process)
                raise QEError(
                    step, f"timed out after {self.timeout_s:.0f} s (log: {log})", kind="timeout"
                ) from None
            except BaseException:  # Ctrl-C or SIGTERM: its own session would not receive them
                _end_group(process)
                raise
            finally:
                with self.lock:
                    self._running.discard(process)
        seconds = time.perf_counter() - start
        output = log.read_text(errors="replace")
        if step_limit_ok and process.returncode == 3 and parsers.step_limit_reached(output):
            return seconds, output
        if process.returncode != 0:
            reason = parsers.qe_failure(output) or f"exit status {process.returncode}"
            raise QEError(step, f"{reason} (log: {log})")
        return seconds, output

    def _wait(self, process: subprocess.Popen[bytes], step: str, start: float) -> None:
        """Wait for ``process`` at most the timeout (then TimeoutExpired); for a ph.x q-point,
        report each irreducible representation it finishes (a q-point can take an hour)."""
        deadline = start + self.timeout_s
        poll = self.poll_s if step.startswith("ph_q") else math.inf
        reported = None
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(process.args, self.timeout_s)
            try:
                process.wait(timeout=min(poll, remaining))
                return
            except subprocess.TimeoutExpired:
                pass
            counts = parsers.ph_representations(self.workdir / f"{step}.out")
            if counts is not None and counts != reported:
                reported = counts
                elapsed = duration(time.perf_counter() - start)
                self.report(f"{step}: {counts[0]} of {counts[1]} representations done ({elapsed})")


def duration(seconds: float) -> str:
    """``seconds`` as people read a duration: 12 s, 3.4 min, 2.1 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _die_with_parent() -> None:
    """In the QE child before exec (Linux): SIGTERM when the thread that started it dies, so a
    parent killed outright (SIGKILL, a plain SIGTERM to a library caller) takes QE with it
    instead of leaving it running in its own session."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a QE step and every rank mpirun started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    process.wait()


def scratch_ready(workdir: Path) -> bool:
    """Whether the pw.x scratch files ph.x reads are in ``workdir``: the scf's charge density
    and wavefunctions and the dense-grid eigenvalues of ``scf_fit`` (la2F)."""
    tmp = workdir / inputs.OUTDIR
    return (tmp / f"{inputs.PREFIX}.save" / "data-file-schema.xml").is_file() and (
        tmp / f"{inputs.PREFIX}.a2Fsave"
    ).is_file()


def _phonons(
    runner: StepRunner,
    settings: VerifySettings,
    qgrid: inputs.Grid,
    rebuild_scratch: Callable[[], None],
    data: dict[str, Any],
) -> str:
    """ph.x one irreducible q-point at a time (steps ``ph_q1`` ... ``ph_qN``; the first one
    writes the list of q-points, ``dyn0``), the ones after the first ``settings.q_workers`` at
    once; returns their logs in q-point order. ``rebuild_scratch`` runs the scf steps again when
    a q-point is still to compute and their scratch files are gone. The chain after this step is
    the same as after one whole-grid ph.x run, which a run folder from before the split may hold
    and which is then reused."""
    whole = inputs.ph_input(settings, qgrid)
    if runner.finished("ph", whole):  # one whole-grid ph.x run, finished earlier
        return runner.run("ph", "ph.x", whole)
    upstream = runner.chain

    def ensure_scratch(index: int) -> None:
        if not scratch_ready(runner.workdir):
            runner.report(
                f"ph_q{index}: the scf scratch files are not in "
                f"{runner.workdir / inputs.OUTDIR}; running scf_fit and scf again (the finished "
                "q-points are kept)"
            )
            rebuild_scratch()
            runner.chain = upstream

    def pending(index: int) -> bool:
        return not runner.finished(f"ph_q{index}", inputs.ph_input(settings, qgrid, q_index=index))

    def run_q(index: int, outdir: str = inputs.OUTDIR) -> str:
        return runner.run(
            f"ph_q{index}",
            "ph.x",
            inputs.ph_input(settings, qgrid, q_index=index, outdir=outdir),
            parallel=True,
            branch=True,
            outputs=(f"{inputs.FILDYN}{index}", f"elph_dir/*.{index}"),
            key_input=inputs.ph_input(settings, qgrid, q_index=index),
        )

    def check(index: int, log: str) -> None:
        """With ``stop_if_unstable``: raise when q-point ``index`` has an imaginary mode."""
        lowest = q_point_min_frequency(log)
        if settings.stop_if_unstable and lowest < -settings.imaginary_tolerance_cm1:
            computed = sum(not pending(i) for i in range(1, total + 1))
            raise DynamicallyUnstableError(index, lowest, computed, total)

    if pending(1):
        ensure_scratch(1)
    logs = {1: run_q(1)}
    total = len(parsers.read_dyn0(runner.workdir / f"{inputs.FILDYN}0")[1])
    data["n_q_points"] = total
    runner.report(_q_progress(runner, 1, total, settings.q_workers))
    check(1, logs[1])
    rest = list(range(2, total + 1))
    first_pending = next((index for index in rest if pending(index)), None)
    if first_pending is not None:
        ensure_scratch(first_pending)
    if settings.q_workers <= 1 or len(rest) <= 1:
        for index in rest:
            logs[index] = run_q(index)
            runner.report(_q_progress(runner, index, total, 1))
            check(index, logs[index])
    else:
        logs.update(
            _phonons_at_once(runner, rest, total, settings.q_workers, run_q, pending, check)
        )
    for leftover in runner.workdir.glob(f"{inputs.OUTDIR}_q*"):  # of interrupted parallel runs
        shutil.rmtree(leftover, ignore_errors=True)
    runner.chain = _hash(upstream, whole)
    return "".join(logs[index] for index in sorted(logs))


def _q_progress(runner: StepRunner, done: int, total: int, workers: int) -> str:
    """``ph: 3 of 10 q-points done``, with a rough time to go once q-points take minutes (the
    mean time of the q-points after Gamma finished so far, ``workers`` at a time; Gamma needs
    no non-scf run and is often the cheapest, and q-points differ in their number of
    representations, so it is an estimate)."""
    text = f"ph: {done} of {total} q-points done"
    seconds = [
        s
        for step, s in dict(runner.timings).items()  # a copy: other q-point threads add to it
        if step.startswith("ph_q") and step != "ph_q1"
    ]
    seconds = [s for s in seconds if s > 0]
    if done < total and seconds and (mean := sum(seconds) / len(seconds)) >= 60:
        left = math.ceil((total - done) / max(workers, 1)) * mean
        text += f" (about {duration(left)} to go at {duration(mean)} per q-point)"
    return text


def _phonons_at_once(
    runner: StepRunner,
    indices: list[int],
    total: int,
    workers: int,
    run_q: Callable[[int, str], str],
    pending: Callable[[int], bool],
    check: Callable[[int, str], None],
) -> dict[int, str]:
    """q-points ``indices`` with ``workers`` ph.x runs at a time, each in a scratch folder of
    its own (``tmp_q<i>``, a copy of the scf's, removed when the q-point is done; ph.x writes
    ``dyn<i>`` and ``elph_dir/*.<i>`` in the run folder as usual). A failed q-point does not stop
    the others; the first failure is raised when they are done. ``check`` is called with each
    finished q-point's log: when it raises (an unstable crystal with ``stop_if_unstable``), the
    q-points not yet started are dropped and the running ones finish. An interrupt ends them
    all."""
    source = runner.workdir / inputs.OUTDIR
    done = [1]

    def one(index: int) -> str:
        folder = f"{inputs.OUTDIR}_q{index}"
        target = runner.workdir / folder
        # an existing folder is a complete copy (renamed only then): reused by an interrupted
        # q-point, which starts again from the beginning in it
        if pending(index) and not target.is_dir():
            partial_copy = runner.workdir / f"{folder}.partial"  # renamed once complete
            shutil.rmtree(partial_copy, ignore_errors=True)
            partial_copy.mkdir()
            shutil.copytree(
                source / f"{inputs.PREFIX}.save", partial_copy / f"{inputs.PREFIX}.save"
            )
            for name in (f"{inputs.PREFIX}.a2Fsave", f"{inputs.PREFIX}.xml"):
                if (source / name).is_file():
                    shutil.copy2(source / name, partial_copy / name)
            partial_copy.rename(target)
        log = run_q(index, folder)
        shutil.rmtree(target, ignore_errors=True)
        with runner.lock:
            done[0] += 1
            runner.report(_q_progress(runner, done[0], total, workers))
        check(index, log)
        return log

    logs: dict[int, str] = {}
    errors: list[BaseException] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ph.x")
    try:
        futures = {pool.submit(one, index): index for index in indices}
        for future in as_completed(futures):
            try:
                logs[futures[future]] = future.result()
            except QEError as exc:
                errors.append(exc)
            except DynamicallyUnstableError:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except BaseException:  # Ctrl-C or SIGTERM while waiting: end every running q-point
        pool.shutdown(wait=False, cancel_futures=True)
        runner.stop_all()
        raise
    pool.shutdown()
    if errors:
        raise errors[0]
    return logs


def _star_weights(workdir: Path, n_q: int) -> list[int]:
    return [parsers.star_size(workdir / f"{inputs.FILDYN}{i}") for i in range(1, n_q + 1)]


def q_point_min_frequency(ph_text: str) -> float:
    """Lowest frequency (cm^-1) in a ph.x log, without the three acoustic modes at Gamma (raw
    DFPT has no acoustic sum rule there); inf when the log lists none."""
    lowest = math.inf
    for q, freqs in parsers.read_ph_frequencies(ph_text):
        values = np.sort(freqs)[3:] if np.allclose(q, 0.0) else freqs
        if values.size:
            lowest = min(lowest, float(values.min()))
    return lowest


def _min_frequency(ph_text: str, matdyn_freq: np.ndarray) -> float:
    """Lowest frequency (cm^-1, negative = imaginary) by the rule in the module doc."""
    lowest = min(
        float(matdyn_freq.min()) if matdyn_freq.size else math.inf, q_point_min_frequency(ph_text)
    )
    return lowest if math.isfinite(lowest) else math.nan


def _write_csvs(out: Path, a2f_by_sigma: dict[float, parsers.A2F], dos: tuple) -> None:
    sigmas = sorted(a2f_by_sigma)
    omega_Ry = a2f_by_sigma[sigmas[0]].frequencies_ry
    header = "omega_cm1,omega_K," + ",".join(f"a2F_sigma_{s:g}Ry" for s in sigmas)
    columns = [omega_Ry * RY_TO_CM1, omega_Ry * RY_TO_K]
    columns += [a2f_by_sigma[s].total for s in sigmas]
    np.savetxt(
        out / "alpha2F.csv",
        np.column_stack(columns),
        delimiter=",",
        header=header,
        comments="",
        fmt="%.8g",
    )
    frequencies, density = dos
    np.savetxt(
        out / "phonon_dos.csv",
        np.column_stack([frequencies, density]),
        delimiter=",",
        header="omega_cm1,dos_states_per_cm1",
        comments="",
        fmt="%.8g",
    )


def _dyn_frequencies_text(workdir: Path) -> str:
    """The dynamical-matrix files dyn1..dynN (each ends with its diagonalised frequencies, in
    ph.out's format), or "" when they cannot be read."""
    try:
        _, qpoints = parsers.read_dyn0(workdir / f"{inputs.FILDYN}0")
        return "".join(
            (workdir / f"{inputs.FILDYN}{i}").read_text(errors="replace")
            for i in range(1, len(qpoints) + 1)
        )
    except (OSError, ValueError, IndexError):
        return ""


def _lambda_x(runner: StepRunner, settings: VerifySettings, ph_text: str) -> list[dict]:
    """Cross-check: lambda.x on ph.x's elph_dir, with star weights from the dyn files."""
    if shutil.which("lambda.x") is None:
        return []
    _, qpoints = parsers.read_dyn0(runner.workdir / f"{inputs.FILDYN}0")
    weights = _star_weights(runner.workdir, len(qpoints))
    files = [f"elph_dir/elph.inp_lambda.{i}" for i in range(1, len(qpoints) + 1)]
    top_cm1 = max((float(f.max()) for _, f in parsers.read_ph_frequencies(ph_text)), default=1e3)
    text = inputs.lambda_input(
        qpoints, weights, files, settings.mu_star, top_cm1 / CM1_PER_THZ * 1.5
    )
    output = runner.run("lambda_x", "lambda.x", text, stdin=True, check_job_done=False)
    return parsers.read_lambda_x(output)


def _run_steps(
    structure: Structure,
    out: Path,
    settings: VerifySettings,
    pseudos: dict[str, Pseudopotential],
    pseudo_dir: Path,
    data: dict[str, Any],
    report: Callable[[str], None] | None = None,
) -> None:
    runner = StepRunner(out / "qe", settings.np, settings.timeout_s, report)
    data["timings_s"] = runner.timings
    data["skipped_steps"] = runner.skipped
    pseudo_path = str(pseudo_dir.resolve())
    runner.aliases[f"'{pseudo_path}'"] = "pseudopotentials " + pseudo_fingerprint(pseudos)
    qgrid = inputs.grid_from_spacing(structure, settings.q_spacing)
    kgrid = inputs.grid_from_spacing(structure, settings.k_spacing, qgrid)
    if settings.relax:
        text = inputs.pw_input(
            structure, pseudos, settings, calculation="vc-relax", kpts=kgrid, pseudo_dir=pseudo_path
        )
        relax_text = runner.run("relax", "pw.x", text, parallel=True, step_limit_ok=True)
        data["relaxation_converged"] = parsers.relaxation_converged(relax_text)
        structure = parsers.read_relaxed_structure(runner.workdir / "relax.out")
        data["qe_version"] = parsers.qe_version(relax_text)
    structure.to(filename=str(out / "structure_relaxed.cif"))
    data["structure_relaxed"] = "structure_relaxed.cif"
    # grids of the relaxed cell (a vc-relax changes the reciprocal lengths only slightly)
    grids = inputs.epc_grids(structure, settings)
    qgrid, kgrid, fit_grid, dos_grid = grids["q"], grids["k"], grids["k_fit"], grids["dos_q"]
    data["grids"] = grids
    _check_magnetism(runner, structure, pseudos, settings, pseudo_path, kgrid, data)
    fit_input = inputs.pw_input(
        structure,
        pseudos,
        settings,
        calculation="scf",
        kpts=fit_grid,
        pseudo_dir=pseudo_path,
        la2F=True,
    )
    scf_input = inputs.pw_input(
        structure, pseudos, settings, calculation="scf", kpts=kgrid, pseudo_dir=pseudo_path
    )
    upstream = runner.chain

    def scf_steps(force: bool = False) -> None:
        runner.chain = upstream
        fit_text = runner.run("scf_fit", "pw.x", fit_input, parallel=True, force=force)
        data["qe_version"] = data.get("qe_version") or parsers.qe_version(fit_text)
        runner.run("scf", "pw.x", scf_input, parallel=True, force=force)

    scf_steps()
    ph_text = _phonons(runner, settings, qgrid, partial(scf_steps, force=True), data)
    runner.run("q2r", "q2r.x", inputs.q2r_input(settings.el_ph_nsigma), stdin=True)
    matdyn_text = inputs.matdyn_input(dos_grid, settings.dos_delta_cm1, settings.el_ph_nsigma)
    runner.run("matdyn", "matdyn.x", matdyn_text, stdin=True)
    # every q-point's frequencies: ph.out of a recovered run lists only that session's q-points
    ph_text = _dyn_frequencies_text(runner.workdir) or ph_text
    _summarize(runner.workdir, out, settings, ph_text, data)
    try:
        data["lambda_x"] = _lambda_x(runner, settings, ph_text)
    except (QEError, ValueError, IndexError, OSError) as exc:  # a cross-check, not the result
        data["lambda_x"] = []
        data["lambda_x_error"] = str(exc)


def may_be_magnetic(structure: Structure) -> bool:
    """Whether a crystal has an element with an open d or f shell (transition metals,
    lanthanides, actinides), the ones whose compounds can order magnetically."""
    return any(
        e.is_transition_metal or e.is_lanthanoid or e.is_actinoid
        for e in structure.composition.elements
    )


def _check_magnetism(
    runner: StepRunner,
    structure: Structure,
    pseudos: dict[str, Pseudopotential],
    settings: VerifySettings,
    pseudo_path: str,
    kgrid: inputs.Grid,
    data: dict[str, Any],
) -> None:
    """The ``magnetism`` step: a spin-polarised scf from a ferromagnetic start (a side branch
    of the step chain); raises :class:`MagneticCrystalError` when the moment survives. Ferromagnetic
    order only: an antiferromagnet needs a supercell and is not detected."""
    data["magnetic"] = None
    if not settings.magnetism_check:
        data["magnetism_check"] = "off (magnetism_check = false)"
        return
    if not may_be_magnetic(structure):
        data["magnetism_check"] = "not run: no d- or f-block element"
        return
    text = inputs.pw_input(
        structure,
        pseudos,
        settings,
        calculation="scf",
        kpts=kgrid,
        pseudo_dir=pseudo_path,
        spin=True,
    )
    log = runner.run("magnetism", "pw.x", text, parallel=True, branch=True)
    for scratch in (runner.workdir / inputs.OUTDIR).glob(f"{inputs.SPIN_PREFIX}.*"):
        if scratch.is_dir():  # its wavefunctions are not needed again
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            scratch.unlink(missing_ok=True)
    moments = parsers.magnetization(log)
    if moments is None:
        raise QEError("magnetism", "no magnetisation in the spin-polarised scf output", "parse")
    total, absolute = moments
    per_atom = absolute / len(structure)
    data["magnetism_check"] = "ferromagnetic start, spin-polarised scf"
    data["magnetization_muB"] = {
        "total_per_cell": total,
        "absolute_per_cell": absolute,
        "absolute_per_atom": per_atom,
    }
    data["magnetic"] = bool(per_atom > settings.magnetic_moment_tol)
    if data["magnetic"]:
        raise MagneticCrystalError(
            f"magnetic: a spin-polarised scf keeps {per_atom:.2f} Bohr magnetons per atom "
            f"(total {total:.2f} per cell), above magnetic_moment_tol "
            f"{settings.magnetic_moment_tol}; the non-spin-polarised electron-phonon run would "
            "describe a state the crystal is not in, so it was not run "
            "(--no-magnetism-check runs it anyway)"
        )


def _summarize(
    workdir: Path, out: Path, settings: VerifySettings, ph_text: str, data: dict[str, Any]
) -> None:
    qe_lambdas = {
        round(r["sigma_Ry"], 6): r for r in parsers.read_matdyn_lambda(workdir / "lambda")
    }
    a2f_by_sigma: dict[float, parsers.A2F] = {}
    results = []
    for index in range(1, settings.el_ph_nsigma + 1):
        sigma = round(settings.el_ph_sigma_ry * index, 6)
        a2f = parsers.read_a2f_dos(workdir / f"a2F.dos{index}")
        a2f_by_sigma[sigma] = a2f
        results.append(broadening_result(sigma, a2f.frequencies_ry, a2f.total, settings.mu_star))
    summary = summarize_broadenings(results, settings.spread_tolerance)
    dos = parsers.read_phonon_dos(workdir / inputs.FLDOS)
    _write_csvs(out, a2f_by_sigma, dos)
    min_freq = _min_frequency(ph_text, parsers.read_matdyn_freq(workdir / inputs.FLFRQ))
    headline = summary.headline
    rows = []
    for result in summary.broadenings:
        row = result.as_dict()
        qe = qe_lambdas.get(round(result.sigma_ry, 6), {})
        row["lambda_matdyn"] = qe.get("lambda")
        row["dos_ef_states_per_Ry"] = qe.get("dos_ef")
        rows.append(row)
    data.update(
        {
            "lambda": headline.lam,
            "omega_log_K": headline.omega_log_k,
            "tc_K": headline.tc_k,
            "min_freq_cm1": min_freq,
            "dynamically_stable": bool(min_freq >= -settings.imaginary_tolerance_cm1),
            "headline_sigma_Ry": headline.sigma_ry,
            "converged": summary.converged,
            "lambda_spread_middle": summary.middle_spread,
            "broadenings": rows,
            "files": {"alpha2F": "alpha2F.csv", "phonon_dos": "phonon_dos.csv"},
        }
    )


def _print_progress(label: str, message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] verify {label}: {message}", file=sys.stderr, flush=True)


def stderr_reporter(label: str) -> Callable[[str], None]:
    """A ``report`` for :func:`verify` that prints ``[HH:MM:SS] verify <label>: <message>``
    lines on stderr (picklable, so it travels to process-pool and dask workers)."""
    return partial(_print_progress, label)


def write_result(out: Path, result: EPCResult) -> Path:
    """Write ``out/result.json`` (NaN written as null) and return its path."""
    path = out / "result.json"
    jsonio.write_json(path, result.as_dict())
    return path


def verify(
    structure: Structure,
    out: str | Path,
    settings: VerifySettings | None = None,
    pseudo_dir: str | Path | None = None,
    structure_id: str = "structure",
    report: Callable[[str], None] | None = None,
) -> EPCResult:
    """Electron-phonon Tc of one structure with Quantum ESPRESSO; writes ``out/result.json``.

    ``report``: called with a line of progress as each QE step starts, ends or is reused, and
    as ph.x finishes each q-point (:func:`stderr_reporter` prints them); None for silence.

    Never raises for a QE problem: a missing pw.x, a missing pseudopotential, a failing or
    non-converging step or a timeout give ``status='error'`` with the reason in ``error`` (and
    ``error_kind``: qe_not_found, pseudopotential, qe_failed, timeout, parse), and whatever
    completed before stays on disk for a rerun to reuse. ``total_seconds`` is this call's wall
    time; ``qe_seconds`` adds up every QE step's own time, the steps reused from an earlier,
    interrupted call included.
    """
    settings = settings or VerifySettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cell = primitive_cell(structure)
    elements = sorted({site.specie.symbol for site in cell}, key=lambda e: cell.symbol_set.index(e))
    data: dict[str, Any] = {
        "id": structure_id,
        "formula": cell.composition.reduced_formula,
        "n_atoms": len(cell),
        "lambda": None,
        "omega_log_K": None,
        "tc_K": None,
        "min_freq_cm1": None,
        "dynamically_stable": None,
        "mu_star": settings.mu_star,
        "settings": settings.as_dict(),
    }
    cell.to(filename=str(out / "structure_input.cif"))
    result = EPCResult("ok", data=data)
    try:
        directory = Path(pseudo_dir) if pseudo_dir is not None else default_pseudo_dir()
        if directory is None:
            raise PseudopotentialError(
                "no --pseudo-dir given and /usr/share/espresso/pseudo does not exist"
            )
        pseudos = choose_pseudopotentials(elements, directory, settings.pseudopotentials)
        ecutwfc, ecutrho = inputs.cutoffs(pseudos, settings)
        data["pseudopotentials"] = {el: p.as_dict() for el, p in pseudos.items()}
        data["functional"] = next(iter(pseudos.values())).functional
        data["cutoffs_Ry"] = {"ecutwfc": ecutwfc, "ecutrho": ecutrho}
        data["pseudo_dir"] = str(directory)
        absent = missing_programs(settings.np)
        if absent:
            raise QEError(
                "setup",
                f"{', '.join(absent)} not found on PATH (install Quantum ESPRESSO, e.g. "
                "apt-get install quantum-espresso)",
                kind="qe_not_found",
            )
        _run_steps(cell, out, settings, pseudos, directory, data, report)
    except MagneticCrystalError as exc:
        result = EPCResult("magnetic", str(exc), data)
        data["error_kind"] = "magnetic"
    except DynamicallyUnstableError as exc:
        result = EPCResult("unstable", str(exc), data)
        data["error_kind"] = "unstable"
        data["dynamically_stable"] = False
        data["min_freq_cm1"] = exc.min_freq_cm1
        data["unstable_q_point"] = exc.q_index
        data["q_points_computed"] = exc.computed
    except PseudopotentialError as exc:
        result = EPCResult("error", str(exc), data)
        data["error_kind"] = "pseudopotential"
    except QEError as exc:
        result = EPCResult("error", str(exc), data)
        data["error_kind"] = exc.kind
        data["failed_step"] = exc.step
    except (OSError, ValueError, KeyError, IndexError) as exc:
        result = EPCResult("error", f"reading QE output: {type(exc).__name__}: {exc}", data)
        data["error_kind"] = "parse"
    data["total_seconds"] = round(time.perf_counter() - start, 3)
    # every QE step's own time, those reused from an earlier, interrupted invocation included
    data["qe_seconds"] = round(sum(data.get("timings_s", {}).values()), 3)
    write_result(out, result)
    return result
