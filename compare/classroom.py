"""A whole class's engines checked at once, each as one row.

    submissions = find_submissions(["submissions/"])        # files, globs, folders
    rows = check_class(submissions, ClassOptions(jobs=2, steps=20), out_dir)

Every engine is copied into a folder of its own before any runs (so an engine that writes
into another student's file changes nothing that is checked), then checked in the sandbox
a single check uses (compare.engine.sandbox: its own processes, a private folder, the memory, CPU,
process and file-size limits of `limits`, the wall clock `timeout` for any one step): the
operator probes and one training step against torch (compare_step, with its gradient
plot), then, if those agree, the published run's first `steps` steps
against the golden trace (compare.certify). `jobs` engines are checked at a time, each by a
checker process of its own. Whatever an engine does (crash, hang, exhaust its memory or CPU
time, fork, write files) it ends as one row with a verdict; the others are unaffected.
"""
from __future__ import annotations

import glob
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .engine.process import DEFAULT_TIMEOUT, EngineFailure, EngineProcess, EngineRefused
from .engine.sandbox import SandboxLimits

NOT_ENGINES = ("conftest.py", "setup.py", "__init__.py")  # files in a folder of submissions that are not engines
GLOB_CHARACTERS = "*?["
MAX_COPY_BYTES = 50 * 2**20  # a submission folder larger than this is not copied whole


class SubmissionError(ValueError):
    """Engines named on the command line that are not there; the message is one line."""


@dataclass
class Submission:
    name: str  # the row's name: the file's stem, or the submission folder's name
    path: Path  # the engine file
    class_name: str = ""  # ":CLASS" given on the command line, else the checker's default
    folder: Path | None = None  # a submission folder: copied whole, so the engine's own imports work
    problem: str = ""  # why no engine file could be chosen in a submission folder


@dataclass
class ClassOptions:
    steps: int = 20  # of the published run, against the golden trace (0: the comparison only)
    timeout: float = DEFAULT_TIMEOUT  # wall-clock seconds for any one thing: loading, a step
    limits: SandboxLimits = field(default_factory=SandboxLimits)  # each engine's process's, as a single check's
    jobs: int = 1
    plots: bool = True


def find_submissions(specs: list[str]) -> list[Submission]:
    """Every engine the specs name: FILE[:CLASS], a glob, or a folder holding one engine file
    per student (or one folder per student, with engine.py or a single .py file)."""
    found: list[Submission] = []
    for spec in specs:
        path_text, class_name = _split_class(spec)
        if any(character in path_text for character in GLOB_CHARACTERS):
            matches = sorted(Path(match) for match in glob.glob(path_text))
            if not matches:
                raise SubmissionError(f"{path_text}: no file matches")
            for match in matches:
                found += _from_path(match, class_name)
        elif Path(path_text).exists():
            found += _from_path(Path(path_text), class_name)
        else:
            raise SubmissionError(f"{path_text}: no such file or folder")
    if not found:
        raise SubmissionError(f"no engine file in {', '.join(specs)}")
    return _unique_names(found)


def _split_class(spec: str) -> tuple[str, str]:
    path, colon, name = spec.rpartition(":")
    return (path, name) if colon and name.isidentifier() else (spec, "")


def _from_path(path: Path, class_name: str) -> list[Submission]:
    if path.is_file():
        return [Submission(path.stem, path.resolve(), class_name)]
    submissions = [Submission(file.stem, file.resolve(), class_name) for file in _engine_files(path)]
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        submissions.append(_from_folder(folder, class_name))
    return submissions


def _engine_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py")
                  if p.name not in NOT_ENGINES and not p.name.startswith(("test_", ".", "_")))


def _from_folder(folder: Path, class_name: str) -> Submission:
    """A student's folder: its engine.py, else its only Python file."""
    files = _engine_files(folder)
    chosen = folder / "engine.py" if (folder / "engine.py").is_file() else (files[0] if len(files) == 1 else None)
    if chosen is None:
        what = "no Python file" if not files else f"{len(files)} Python files and none named engine.py"
        return Submission(folder.name, folder.resolve(), class_name, folder.resolve(), problem=f"{folder}: {what}")
    return Submission(folder.name, chosen.resolve(), class_name, folder.resolve())


def _unique_names(submissions: list[Submission]) -> list[Submission]:
    seen: dict = {}
    for submission in submissions:
        count = seen.get(submission.name, 0) + 1
        seen[submission.name] = count
        if count > 1:
            submission.name = f"{submission.name}-{count}"
    return submissions


def check_class(submissions: list[Submission], options: ClassOptions, out_dir: Path, on_row=None) -> list[dict]:
    """One row per submission (in the order given), `jobs` checked at a time, each in a fresh
    checker process's care. `on_row(row)` sees each row as it is done."""
    import multiprocessing

    out_dir = Path(out_dir).resolve()  # the checks run from the engines' own folders
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    rows: dict = {}
    with tempfile.TemporaryDirectory(prefix="microgpt-class-") as work:
        copies = {submission.name: _private_copy(submission, Path(work) / f"{index:04d}")
                  for index, submission in enumerate(submissions) if not submission.problem}
        context = multiprocessing.get_context("spawn")  # a clean interpreter: nothing of this one's state
        with ProcessPoolExecutor(max_workers=options.jobs, mp_context=context) as pool:
            futures = {pool.submit(check_one, submission, copies.get(submission.name), options, out_dir): submission
                       for submission in submissions}
            for future in as_completed(futures):
                submission = futures[future]
                try:
                    row = future.result()
                except Exception as error:  # the checker's own process ended (killed from outside?)
                    row = _row(submission, _summary_error(f"the checker's process for this engine ended: {error}"),
                               "", 0.0, 0.0)
                rows[submission.name] = row
                if on_row is not None:
                    on_row(row)
    return [rows[submission.name] for submission in submissions]


def check_one(submission: Submission, engine: Path | None, options: ClassOptions, out_dir: Path) -> dict:
    """Check one engine, from its private copy `engine` (in a checker process of the pool):
    its row, with the report's text."""
    from .report.summary import failure_summary, refusal_summary

    wall, cpu = time.monotonic(), _children_cpu()
    here = os.getcwd()
    text = ""
    try:
        if engine is None:
            summary = _summary_refused(submission.problem)
        else:
            os.chdir(engine.parent)  # the engine's process starts in its own copy
            spec = f"{engine}:{submission.class_name}" if submission.class_name else str(engine)
            summary, text = _check(spec, submission, options, out_dir)
    except EngineRefused as error:
        summary, text = refusal_summary(error), _refusal_text(error)
    except EngineFailure as error:
        summary, text = failure_summary(error), _failure_text(error)
    except (ValueError, OSError) as error:  # what the engine sent back could not be used
        summary, text = _summary_error(f"the check could not finish: {error}"), f"ERROR: {error}"
    finally:
        os.chdir(here)
    if engine is not None:
        summary["cause"], text = (_original_paths(part, engine, submission) for part in (summary["cause"], text))
    return _row(submission, summary, text, time.monotonic() - wall, _children_cpu() - cpu)


def _original_paths(text: str | None, engine: Path, submission: Submission) -> str | None:
    """The engine's messages name its private copy: put the submission's own path back."""
    if not text:
        return text
    if submission.folder is not None:
        copied = engine.parents[len(submission.path.relative_to(submission.folder).parts) - 1]
        return text.replace(str(copied), str(submission.folder))
    return text.replace(str(engine), str(submission.path))


def _check(spec: str, submission: Submission, options: ClassOptions, out_dir: Path) -> tuple[dict, str]:
    """The comparison (probes, one step, the plot), then the golden trace if it agrees."""
    from .check import compare_step
    from .report.render import render
    from .report.summary import summary_of

    with EngineProcess(spec, timeout=options.timeout, limits=options.limits) as engine:
        report = compare_step(engine=spec, timeout=options.timeout, engine_process=engine)
        engine.check_own_files()
        sandbox = engine.sandbox
    report.settings.engine = submission.name  # the report names the student, not the private copy
    summary, text = summary_of(report), render(report) + f"\nsandbox: {sandbox}\n"
    if options.plots and report.gradient_values and _has_matplotlib():
        from .report.plot import plot_gradients

        plot_gradients(report, out_dir / "plots" / f"{submission.name}.png")
        summary["plot"] = f"plots/{submission.name}.png"
    if report.agrees and options.steps:
        passed, line = _certify(spec, options)
        text += f"\n{line}\n"
        if not passed:
            summary.update(verdict="DISAGREE", agrees=False, exit_code=1, cause=line.removeprefix("FAIL: "))
    return summary, text


def _certify(spec: str, options: ClassOptions) -> tuple[bool, str]:
    """The published run's first steps against the golden trace: (passed, one line)."""
    from .certify import judge_run

    golden, docs = _golden_and_docs()
    steps = min(options.steps, len(golden["steps"]))
    from .certify import golden_config, wanted_samples

    with EngineProcess(spec, timeout=options.timeout, limits=options.limits) as engine:
        engine.engine()
        engine.start_certify(docs, steps, len(wanted_samples(golden, steps)), golden_config(golden).to_dict(),
                             golden["seed"])
        certificate = judge_run(engine.record_run, golden, steps, passthrough=(EngineFailure,))
        engine.check_own_files()
    if certificate.passed:
        return True, f"PASS: the golden trace's first {steps} steps match"
    return False, f"FAIL: {certificate.difference.message}"


@lru_cache(maxsize=1)
def _golden_and_docs():
    from microgpt_scalar.cli import data_path
    from microgpt_scalar.data import load_docs

    from .certify import load_golden

    return load_golden(), load_docs(data_path(None))


def _private_copy(submission: Submission, copy: Path) -> Path:
    """The engine file (and its submission folder, if small) copied into the new folder `copy`."""
    copy.mkdir()
    if submission.folder is not None and _size(submission.folder) <= MAX_COPY_BYTES:
        target = copy / submission.folder.name
        shutil.copytree(submission.folder, target, symlinks=False,
                        ignore=shutil.ignore_patterns("__pycache__", ".git"))
        return target / submission.path.relative_to(submission.folder)
    target = copy / submission.path.name
    shutil.copyfile(submission.path, target)
    return target


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _summary_refused(problem: str) -> dict:
    return {"verdict": "REFUSED", "agrees": False, "exit_code": 2, "probes": [], "missing": [], "skipped_lines": [],
            "cause": problem, "tensors": []}


def _summary_error(message: str) -> dict:
    return {"verdict": "ERROR", "agrees": False, "exit_code": 1, "probes": [], "missing": [], "skipped_lines": [],
            "cause": message, "tensors": []}


def _refusal_text(error: EngineRefused) -> str:
    from .report.render import early_block

    return early_block(error.found if hasattr(error.found, "results") else None, error.skipped, []) + f"error: {error}"


def _failure_text(error: EngineFailure) -> str:
    """What a single check prints for an engine that failed: the probes that had ended, the
    likely cause, the failure's line."""
    from .report.render import cause_block, early_block

    probes = early_block(error.probes, [], []) if error.probes is not None and error.found is None else ""
    causes = cause_block(getattr(error, "causes", None) or [])
    return probes + (f"\n{causes}\n" if causes else "") + f"ERROR: {error}"


def _row(submission: Submission, summary: dict, text: str, seconds: float, cpu_seconds: float) -> dict:
    from .report.summary import worst_tensor

    worst = worst_tensor(summary) if summary.get("tensors") else None
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    return {"engine": submission.name, "path": str(submission.path), **summary,
            "engine_peak_mib": round(peak, 1),  # the largest engine process this checker process has run so far
            "worst_tensor": (f"{worst['kind']} {worst['name']}" if worst else ""),
            "worst_excess": worst["excess"] if worst else None,
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2), "report": text}
