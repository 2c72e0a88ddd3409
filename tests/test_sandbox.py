"""The sandbox of the engine's process, against hostile engines (tests/hostile/).

Every hostile run uses a copy of the project in a temporary folder, so an attack that
worked could damage only the copy, and runs under limits of its own (time, memory,
processes, CPU) so that it cannot harm the machine. The oracles: the files' sha256 before
and after, the processes alive afterwards, the operating system's own answers (errno, the
process ids and limits the engine sees), and torch (through the verdict).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import types
import uuid

import pytest

from compare.engine import protocol
from compare.engine.protocol import ProtocolError, decode, shown
from compare.engine.sandbox import SandboxLimits
from helpers import REPO, edited_copy

LIMITS = ["--timeout", "20", "--max-memory", "1024", "--max-processes", "32", "--max-cpu", "120"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project, its hostile engines beside it, and the wrong engine they all
    import (wrong_exp.py: tests/engines/local_gradients.py with exp's local gradient 1% off);
    returns its root."""
    root = tmp_path_factory.mktemp("project")
    for part in ("compare", "microgpt_scalar", "microgpt_torch", "scripts", "tests/hostile"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    edited_copy(REPO / "tests" / "engines" / "local_gradients.py", root / "tests" / "hostile" / "wrong_exp.py",
                "(self,), (math.exp(self.data),))", "(self,), (1.01 * math.exp(self.data),))")
    root.chmod(0o755)  # as a project usually is: any user may read it (pytest makes its folders 0700)
    return root


def digests(root) -> dict:
    found = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, root)] = hashlib.sha256(file.read()).hexdigest()
    return found


def run_checker(project, script, engine, *more, env=None):
    """scripts/{script}.py of the copy on hostile engine `engine`, under LIMITS; (result, marker):
    the marker is in the environment of every process of the run, to find any left behind."""
    marker = uuid.uuid4().hex
    environment = {**os.environ, "PYTHONPATH": str(project), "HOSTILE_MARK": marker, **(env or {})}
    argv = [sys.executable, str(project / "scripts" / f"{script}.py"), "--engine",
            str(project / "tests" / "hostile" / engine), *LIMITS, *map(str, more)]
    if script == "certify":
        argv += ["--steps", "1"]
    result = subprocess.run(argv, cwd=project, env=environment, capture_output=True, text=True, timeout=300)
    return result, marker


def alive_with(marker: str) -> list:
    """Processes whose environment holds `marker`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if f"HOSTILE_MARK={marker}".encode() in environ.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def gone(marker: str, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive_with(marker)


def one_line(result) -> str:
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    return result.stderr


def sandbox_level(project) -> str:
    """What the sandbox is on this machine, as the engine's process reports it."""
    result, _ = run_checker(project, "certify", "inspects_sandbox.py")
    return json.loads(result.stderr.split("RuntimeError: ", 1)[1])


def namespaces_here() -> bool:
    from compare.engine.confine import can_use_namespaces

    return can_use_namespaces() and os.environ.get("MICROGPT_SANDBOX") != "no-namespaces"


needs_namespaces = pytest.mark.skipif(not namespaces_here(), reason="namespaces need root (and CAP_SYS_ADMIN)")


# --- attacks in plain Python: the tripwire ends them at once, in one line ------------------------

PLAIN = {
    "rewrites_checker.py": "tried to write ",
    "swaps_code.py": "changed the checker's own code (compare.engine.probes._run_one.__code__)",
    "writes_terminal.py": "tried to write /",
    "kills_parent.py": "tried to send a signal to process",
    "forges_protocol.py": "sent a malformed 'engine' message (notes is not a list)",
    "daemon.py": "tried to start a process (os.fork)",
}


@pytest.mark.parametrize("engine", PLAIN)
@pytest.mark.parametrize("sandbox", ["namespaces", "no-namespaces"])
def test_a_hostile_engine_ends_in_one_line_and_exit_1_and_changes_no_file(project, engine, sandbox):
    if sandbox == "namespaces" and not namespaces_here():
        pytest.skip("namespaces need root (and CAP_SYS_ADMIN)")
    before = digests(project)
    result, marker = run_checker(project, "certify", engine, env={"MICROGPT_SANDBOX": sandbox})
    assert result.returncode == 1, result.stdout + result.stderr
    assert PLAIN[engine] in one_line(result)
    assert "PASS" not in result.stdout and "AGREE" not in result.stdout + result.stderr
    assert digests(project) == before
    assert gone(marker)


# The same attacks while the file loads: the loader's guard (compare.engine.statements) refuses the
# action and skips the statement, so the class is never made; what only the tripwire or the
# protocol's schema sees ends the run as above.
AT_IMPORT = {
    "rewrites_checker.py": (2, "writes a file ("),
    "writes_terminal.py": (2, "writes a file ("),
    "kills_parent.py": (2, "starts or signals a process (os.kill)"),
    "daemon.py": (2, "starts or signals a process (os.fork)"),
    "swaps_code.py": (1, PLAIN["swaps_code.py"]),
    "forges_protocol.py": (1, PLAIN["forges_protocol.py"]),
}


@pytest.mark.parametrize("engine", AT_IMPORT)
def test_a_hostile_engine_attacking_while_it_loads_gets_no_verdict_and_changes_no_file(project, engine):
    before = digests(project)
    result, marker = run_checker(project, "certify", engine, env={"HOSTILE_AT": "import"})
    code, words = AT_IMPORT[engine]
    assert result.returncode == code, result.stdout + result.stderr
    assert words in one_line(result)
    assert "PASS" not in result.stdout and "AGREE" not in result.stdout + result.stderr
    assert digests(project) == before
    assert gone(marker)


def test_a_module_a_training_script_imports_writes_nothing(project, tmp_path):
    """Every top-level statement of a script without a main guard runs, and the module it
    imports runs whole: the import that writes a file is refused, skipped and listed, and the
    engine is checked without it."""
    (tmp_path / "helper.py").write_text("from pathlib import Path\n"
                                        "Path(__file__).with_name('written.txt').write_text('x')\n")
    (tmp_path / "train.py").write_text((REPO / "tests" / "engines" / "local_gradients.py").read_text()
                                       + "\nimport helper\nfor step in range(3):\n    print(step)\n")
    result = subprocess.run([sys.executable, str(project / "scripts" / "certify.py"), "--engine", "train.py",
                             *LIMITS, "--steps", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(project)})
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = next(line for line in result.stdout.splitlines() if "import helper" in line)
    assert "(writes a file (" in skipped and skipped.endswith("written.txt))"), skipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["helper.py", "train.py"]


# --- attacks through the C library: the operating system refuses them -----------------------------

@needs_namespaces
@pytest.mark.parametrize("project_mode", [0o755, 0o700])
def test_the_engines_process_is_shut_in_by_the_operating_system(project, project_mode):
    """What the engine sees, through the C library: PID 1 of its own namespace, no other
    process, a user of its own (or, when the project is readable only by root, root's file
    access with a user id of its own, for the process limit), the limits given, read-only
    checker files (EROFS), a writable private folder, no terminal, and no network
    (ENETUNREACH)."""
    project.chmod(project_mode)
    try:
        seen = sandbox_level(project)
    finally:
        project.chmod(0o755)
    assert seen["pid"] == 1 and seen["ppid"] == 0 and seen["processes_seen"] == [1]
    assert seen["uid"] != 0 and seen["euid"] == (seen["uid"] if project_mode == 0o755 else 0)
    assert seen["limits"]["RLIMIT_AS"] == [1024 << 20] * 2 and seen["limits"]["RLIMIT_NPROC"] == [32, 32]
    assert seen["limits"]["RLIMIT_CPU"] == [120, 120]
    assert seen["limits"]["RLIMIT_FSIZE"] == [SandboxLimits().file_bytes] * 2
    assert seen["write_checker"] in (-13, -30)  # EACCES (a user of its own), EROFS (every mount read-only)
    assert seen["write_work"] == 2
    assert seen["tty"] < 0
    assert seen["connect"] == -1 and seen["connect_errno"] in (101, 113)  # ENETUNREACH, EHOSTUNREACH
    assert not os.path.exists(os.path.join(seen["work"], "scratch.txt"))  # its folder was its own


@needs_namespaces
@pytest.mark.parametrize("engine", ["rewrites_checker_libc.py", "writes_terminal_libc.py", "kills_parent_libc.py"])
def test_an_attack_through_the_c_library_fails_and_the_verdict_stands(project, engine):
    before = digests(project)
    result, marker = run_checker(project, "certify", engine)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "forged" not in result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("FAIL: step 1: gradient of ")  # exp's mistake, found
    assert digests(project) == before
    assert gone(marker)


@pytest.mark.parametrize("sandbox", ["namespaces", "no-namespaces"])
def test_a_detached_daemon_dies_with_the_check_and_the_report_stays(project, tmp_path, sandbox):
    if sandbox == "namespaces" and not namespaces_here():
        pytest.skip("namespaces need root (and CAP_SYS_ADMIN)")
    report = tmp_path / "report.json"
    before = digests(project)
    result, marker = run_checker(project, "compare_step", "daemon_libc.py", "--json", report,
                                 env={"HOSTILE_REPORT": str(report), "MICROGPT_SANDBOX": sandbox})
    assert result.returncode == 1 and "\nDISAGREE: " in result.stdout, result.stdout + result.stderr
    written = report.read_bytes()
    assert json.loads(written)["report"]["settings"]["engine"].endswith("daemon_libc.py")  # the whole report, under its summary
    assert gone(marker)
    time.sleep(1.0)  # the daemon would write every 0.1 s
    assert report.read_bytes() == written
    assert digests(project) == before


def test_without_namespaces_a_checker_rewritten_on_disk_gives_no_verdict(project, tmp_path):
    """Without namespaces the files are the user's to write, and C-library code goes around
    the audit hook: the parent, which imports nothing from disk once the engine runs,
    finds its files changed when the verdict is due, and refuses to give one."""
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    result, marker = run_checker(copy, "certify", "rewrites_checker_libc.py",
                                 env={"MICROGPT_SANDBOX": "no-namespaces"})
    assert result.returncode == 1
    assert "the checker's own files changed on disk while the scalar engine" in one_line(result)
    assert "compare/step/torch_side.py" in result.stderr and "compare/golden/microgpt.json" in result.stderr
    assert "PASS" not in result.stdout
    assert gone(marker)


# --- resources ----------------------------------------------------------------------------------

def test_a_memory_hog_stops_at_the_memory_limit(project):
    result, marker = run_checker(project, "certify", "hogs_memory.py", "--max-memory", 300)
    assert result.returncode == 1
    assert "raised MemoryError" in one_line(result) and "--max-memory" in result.stderr
    assert gone(marker)


@needs_namespaces
def test_a_fork_bomb_stops_at_the_process_limit_and_nothing_of_it_survives(project):
    """Under namespaces the engine's process has a user of its own, whose process count
    RLIMIT_NPROC limits (root's is never limited)."""
    result, marker = run_checker(project, "certify", "fork_bomb.py", "--max-processes", 8)
    assert result.returncode == 1
    assert "raised RuntimeError while training step 1: fork bomb: " in one_line(result)
    children = int(result.stderr.split("fork bomb: ")[1].split()[0])
    assert 0 < children < 8
    assert gone(marker)


def test_limits_default_to_what_a_learner_never_reaches_and_cpu_follows_the_timeout():
    default = SandboxLimits.for_run(timeout=300, phases=4)
    assert default.memory_mb >= 4096 and default.processes >= 64 and default.file_mb >= 256
    assert default.cpu_seconds >= 2 * 300 * 4
    assert SandboxLimits.for_run(timeout=10, phases=4, memory_mb=100).memory_mb == 100


def test_a_limit_flag_out_of_range_is_one_line_and_exit_2(project):
    result = subprocess.run([sys.executable, str(project / "scripts" / "certify.py"), "--engine", "x.py",
                             "--max-memory", "0"], capture_output=True, text=True, cwd=project, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(project)})
    assert result.returncode == 2 and "--max-memory" in one_line(result)


def test_the_report_cannot_replace_the_engines_own_file(tmp_path, capsys):
    from compare.command import main

    engine = tmp_path / "engine.py"
    shutil.copy(REPO / "tests" / "engines" / "closures.py", engine)
    before = engine.read_bytes()
    assert main(["--engine", str(engine), "--json", str(engine)]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "is an input of this run" in err
    assert engine.read_bytes() == before


# --- the protocol -------------------------------------------------------------------------------

SHAPES = {"wte": (2, 3)}
GOOD_STEP = {"kind": "step", "step": 0, "loss": 1.5, "traces": [{"stage": [[1.0]]}],
             **{name: {"wte": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]} for name in ("grads", "params", "adam_m", "adam_v")}}


@pytest.mark.parametrize("line, words", [
    ("AGREE: the scalar engine and torch agree\n", "a line that is not a message"),
    ("[1, 2]\n", "a message without a kind"),
    ('{"kind": "done"}\n', "a 'done' message where 'step' was due"),
    ('{"kind": "step"}\n', "a malformed 'step' message (it lacks step, loss"),
    (json.dumps({**GOOD_STEP, "loss": "1.5"}), "loss is not a number"),
    (json.dumps({**GOOD_STEP, "loss": True}), "loss is not a number"),
    (json.dumps({**GOOD_STEP, "grads": {"wte": [[0.0, 1.0]]}}), "grads[wte] does not have 2 rows"),
    (json.dumps({**GOOD_STEP, "grads": {"wpe": [[0.0]]}}), "grads does not hold the model's tensors (wte)"),
    (json.dumps({**GOOD_STEP, "params": {"wte": [[0.0, 1.0, 2.0], [3.0, 4.0]]}}), "params[wte] is not a list of 3"),
    (json.dumps({**GOOD_STEP, "traces": 7}), "traces is not a list"),
    ("[" * 100_000 + "]" * 100_000, "a line that is not a message"),
])
def test_a_forged_or_malformed_message_is_one_line_protocol_error(line, words):
    with pytest.raises(ProtocolError) as raised:
        decode(line, protocol.Step, shapes=SHAPES)
    assert words in str(raised.value) and "\n" not in str(raised.value)


FOUND = {"kind": "engine", "notes": [], "probes": {"0:a + b": {"value": 1.0, "grads": [1.0, 1.0]}}, "chain": None,
         "missing": None, "skipped": [{"line": 3, "text": "fetch()", "reason": "reaches the network", "names": [],
                                       "raised_at": None}],
         "facts": {"methods": {"backward": {"file": "e.py", "line": 9, "lines": ["def backward(self):"]}},
                   "data_type": "float", "mutable_defaults": [], "class_containers": [], "eq": False, "hash": True},
         "speed": {"per_node": 1e-6, "growth": 1.1, "nodes": 12000}, "hung": False}


def changed(**fields) -> str:
    return json.dumps({**FOUND, **fields})


@pytest.mark.parametrize("line, words", [
    (changed(skipped=[{"line": -1, "text": "x", "reason": "y"}]), "skipped[0].line is not a whole number"),
    (changed(skipped=["line 3"]), "skipped[0] is not a skipped line"),
    (changed(facts={"methods": {"backward": {"file": "e.py", "line": 9, "lines": [5]}}}), "is not a string"),
    (changed(facts={"mutable_defaults": [{"name": "children", "filled": "3"}]}), "facts.mutable_defaults"),
    (changed(speed={"per_node": float("nan"), "growth": 1.0, "nodes": 5}), "speed holds a negative or undefined"),
    (changed(speed={"per_node": 1e-6, "growth": 1.0}), "speed.nodes is not a whole number"),
    (changed(probes={"0:a + b": {"error": "x", "where": {"file": "e.py", "line": "9", "text": ""}}}), "where.line"),
    (changed(probes={"0:a + b": {"not_run": 3}}), "probe 0:a + b is not a string"),
    (changed(probes={"0:a + b": {"error": "x", "grown_mb": -5}}), "grown_mb is not a whole number >= 0"),
    (changed(probes={"0:a + b": {"error": "x", "grown_mb": 1e9}}), "grown_mb is not a whole number"),
    (changed(hung="no"), "hung is not true or false"),
])
def test_a_malformed_engine_report_is_one_line_protocol_error(line, words):
    with pytest.raises(ProtocolError) as raised:
        decode(line, protocol.EngineFound)
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_the_streamed_probe_and_facts_read_back_as_sent_and_a_bad_one_is_refused():
    found = decode(json.dumps(FOUND), protocol.EngineFound)
    assert decode(protocol.encode(found), protocol.EngineFound) == found
    probe = protocol.ProbeResult("0:a + b", {"error": "raised ZeroDivisionError: x", "type": "ZeroDivisionError",
                                            "where": {"file": "e.py", "line": 4, "text": "1 / 0"}, "overran": False,
                                            "grown_mb": 300})
    assert decode(protocol.encode(probe), protocol.ProbeResult) == probe
    with pytest.raises(ProtocolError):
        decode(json.dumps({"kind": "probe", "key": "0:a + b", "result": {"value": 1.0}}), protocol.ProbeResult)
    with pytest.raises(ProtocolError):
        decode(json.dumps({"kind": "facts", "facts": {"methods": []}}), protocol.EngineFacts)


def test_a_well_formed_message_reads_back_as_it_was_sent():
    step = decode(json.dumps(GOOD_STEP), protocol.Step, shapes=SHAPES)
    assert json.loads(protocol.encode(step)) == GOOD_STEP
    failure = protocol.Failure("raised ValueError", "math domain error", 3, False)
    assert decode(protocol.encode(failure), protocol.Failure) == failure


def test_text_from_the_engine_is_shown_with_its_control_characters_escaped():
    forged = "\x1b[2J\x1b[HAGREE\rok\nsecond line\u202eevil\x00"
    text = shown(forged)
    assert text == "\\x1b[2J\\x1b[HAGREE\\x0dok\\x0asecond line\\u202eevil\\x00"
    message = decode(json.dumps({"kind": "error", "message": forged, "skipped": []}), protocol.LoadError)
    assert message.message == text


# --- the guard of the checker's own code, in this process ----------------------------------------

def test_a_swapped_code_object_is_found_by_the_guard():
    """The guard that runs after loading, probing and every step: a code object, defaults or
    a binding of the checker changed, whatever way it was done."""
    import compare.engine.probes as probes
    from compare.engine import worker

    before = worker.own_code()
    original = probes._run_one.__code__
    probes._run_one.__code__ = (lambda value_cls, probe: {}).__code__
    try:
        assert worker.changed_code(before) == "compare.engine.probes._run_one.__code__"
    finally:
        probes._run_one.__code__ = original
    assert worker.changed_code(before) is None
    saved = probes.run_probes
    probes.run_probes = types.SimpleNamespace
    try:
        assert worker.changed_code(before) == "compare.engine.probes.run_probes"
    finally:
        probes.run_probes = saved
