"""Nothing a run has saved is lost, with runs side by side too: every output is claimed at the
start of its run, two runs aiming at one file do not both write it, a killed write leaves the
old file or the new one whole, and temporary files are removed only by their own writer or
once their writer is gone.

Where the timing is random (two runs started together, a kill -9 during a save, Ctrl-C at
any moment; for the scalar and the torch trainer, and under torchrun) each test repeats
REPEATS times, 30 unless MICROGPT_REPEATS says otherwise. The torch trainer's runs, and the
scalar trainer's two runs at once, are processes forked from one that loaded the trainer
once, so that a repetition costs its own work and not the imports (seconds of them for
torch); a Ctrl-C that may come while the interpreter starts, and torchrun's launcher itself,
are tried in processes of their own. Every process a test starts is killed with what it
started when the test ends (the `children` fixture).

    pytest tests/test_output_claims.py
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Children, load_script
from preloaded_workers import PreloadedWorkers

from microgpt_scalar.checkpoint import load_checkpoint
from microgpt_scalar.files import FileError, claim_output, read_input, write_atomically, writer_id
from microgpt_torch.checkpoint import load_any_checkpoint

REPEATS = int(os.environ.get("MICROGPT_REPEATS", "30"))
NAMES = "anna\nbob\ncab\ndan\nada\nbea\ncarl\ndora\nemma\nfinn\ngus\nhal\nida\njo\nkay\nlea\n"
TINY = ["--n-embd", "8", "--n-head", "2", "--samples", "0"]  # steps of a few milliseconds


def env(repo_root) -> dict:
    return {**os.environ, "PYTHONPATH": str(repo_root), "PYTHONFAULTHANDLER": "1"}


def finish(child, seconds: float = 60):
    """(stdout, stderr) of `child` once it ends; if it has not after `seconds`, its stack
    (faulthandler, on SIGABRT) in a failure."""
    try:  # waits, then reads through the file objects: a readline() before may hold lines already read
        child.wait(timeout=seconds)
        return child.stdout.read(), child.stderr.read()
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGABRT)
        child.wait()
        out, err = child.stdout.read(), child.stderr.read()
        pytest.fail(f"no end {seconds} s after Ctrl-C; {out.count('step ')} steps logged; stack:\n{err[-3000:]}")


def script(repo_root, name: str) -> list:
    return [sys.executable, str(repo_root / "scripts" / f"{name}.py")]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("threads: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def temporary_files(folder) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".probe")))


# --- claims ---

def test_a_claimed_file_is_refused_to_a_second_claim_and_free_once_released(tmp_path):
    target = tmp_path / "run.json"
    first = claim_output(target, "--save")
    child = subprocess.run([sys.executable, "-c", "import sys; from microgpt_scalar.files import claim_output;"
                            "claim_output(sys.argv[1], '--save')", str(target)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 1 and f"--save {target}: another run (process {os.getpid()} on " in child.stderr
    with pytest.raises(FileError, match="this run already writes it as --save"):
        claim_output(target, "--json")
    first.write(b"one")
    first.release()
    with claim_output(target, "--save", overwrite=True) as again:
        again.write(b"two")
    assert target.read_bytes() == b"two" and temporary_files(tmp_path) == []


def test_a_write_refuses_a_file_another_program_wrote_after_the_claim(tmp_path):
    target = tmp_path / "run.json"
    with claim_output(target, "--save") as output:
        output.write(b"first save")
        target.write_bytes(b"the user's own file, copied here meanwhile")
        with pytest.raises(FileError, match="another program wrote it after this run began"):
            output.write(b"second save")
        assert target.read_bytes() == b"the user's own file, copied here meanwhile"
        target.unlink()
        target.symlink_to(tmp_path / "elsewhere")
        with pytest.raises(FileError, match="is a link now"):
            output.write(b"third save")
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "link", "empty", "long_name", "nul"])
def test_outputs_that_are_not_regular_files_are_refused_at_the_claim(kind, tmp_path):
    fifo, folder, link = tmp_path / "pipe", tmp_path / "folder", tmp_path / "link"
    os.mkfifo(fifo)
    folder.mkdir()
    link.symlink_to(tmp_path / "nowhere")
    path, words = {
        "fifo": (fifo, "a FIFO"), "directory": (folder, "a directory"), "device": ("/dev/full", "a device"),
        "link": (link, "is a link"), "empty": ("", "the path is empty"),
        "long_name": (tmp_path / ("x" * 256), "longer than 255 bytes"), "nul": ("a\0b", "NUL"),
    }[kind]
    with pytest.raises(FileError, match=words):
        claim_output(path, "--out", overwrite=True)
    assert not (tmp_path / "nowhere").exists()


def test_reading_a_fifo_or_a_device_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # no writer: an ordinary open() would wait forever
    with pytest.raises(FileError, match="is a FIFO, not a regular file"):
        read_input(fifo, "golden trace")
    with pytest.raises(FileError, match="is a device, not a regular file"):
        read_input("/dev/zero", "checkpoint")  # would never end


# --- two runs at once ---

@pytest.fixture(scope="module")
def scalar_workers(repo_root):
    """Workers running train_scalar.py's main, each forked from a process that imported the
    scalar trainer once (tests/preloaded_workers.py): a repetition costs its own work, not an
    interpreter's start."""
    started = Children()
    yield PreloadedWorkers(started, env(repo_root), "scalar")
    started.end_all()


def test_two_trainers_saving_to_one_file_never_both_write_it(scalar_workers, tmp_path):
    """Started together, aiming at one --save file: one run writes it, the other is refused at
    its start in one line, before its first step."""
    data = tmp_path / "names.txt"
    data.write_text(NAMES)
    refusals = set()
    for repeat in range(REPEATS):
        save = tmp_path / f"run{repeat}.json"
        outs = [tmp_path / f"run{repeat}.{i}" for i in range(2)]
        pids = []
        for out in outs:
            pids.append(scalar_workers.start(["--data", data, "--steps", "30", *TINY, "--save", save], {}, out))
            time.sleep(random.uniform(0, 0.05))
        results = [(scalar_workers.wait(pid, 120), *worker_output(out)) for pid, out in zip(pids, outs)]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 2], results
        code, out, err = next(result for result in results if result[0] == 2)
        line = one_error_line(err)
        assert out == "" and f"--save {save}" in line, line  # refused before the first step
        refusals.add("another run" if "another run" in line else "exists" if "--overwrite" in line else line)
        assert load_checkpoint(save).step == 30
        assert temporary_files(tmp_path) == []
    assert refusals <= {"another run", "exists"}


def test_a_write_never_removes_a_live_writers_temporary_file(tmp_path, children):
    """Two processes write files of the same name prefix in one folder at once; neither removes
    the other's temporary file (each write of each must succeed)."""
    writer = ("import sys; from microgpt_scalar.files import write_atomically\n"
              "for i in range(200): write_atomically(sys.argv[1], b'x' * 50000)\n")
    runs = [children.start([sys.executable, "-c", writer, str(tmp_path / name)], stderr=subprocess.PIPE, text=True)
            for name in ("run.json", "run.json.bak")]
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stderr.read()
    assert temporary_files(tmp_path) == []


# --- kill -9 during a save ---

WRITER = """
import sys
from microgpt_scalar.files import write_atomically
size, path = int(sys.argv[1]), sys.argv[2]
write_atomically(path, b"A" * size)
print("ready", flush=True)
i = 0
while True:
    i += 1
    write_atomically(path, bytes([65 + i % 26]) * size)
"""


def test_kill_9_during_saves_leaves_the_file_whole(tmp_path, children):
    """A writer saving 2 MB again and again is killed at a random moment: the file is one whole
    save, old or new, never a mix or a part; a temporary file left behind carries the dead
    writer's id, and the next write to the file removes it."""
    target, size = tmp_path / "run.json", 2_000_000
    strays = 0
    for _ in range(REPEATS):
        child = children.start([sys.executable, "-c", WRITER, str(size), str(target)], stdout=subprocess.PIPE,
                               text=True)
        assert child.stdout.readline() == "ready\n"
        time.sleep(random.uniform(0, 0.15))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        content = target.read_bytes()
        assert len(content) == size and content == content[:1] * size
        left = temporary_files(tmp_path)
        strays += len(left)
        assert all(f"-{child.pid}-" in name for name in left), left
        write_atomically(target, b"B" * size)  # the next write removes what the dead one left
        assert temporary_files(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
    assert strays <= REPEATS // 10  # nameless temporary files: a name exists only for the rename itself


def test_a_crashed_earlier_process_of_the_same_id_leaves_nothing_after_the_next_save(tmp_path):
    target = tmp_path / "run.json"
    (tmp_path / f".run.json.{writer_id()}-12345678.tmp").write_bytes(b"half a save")
    write_atomically(target, b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


# --- Ctrl-C at any moment ---

# What Python itself prints when a Ctrl-C comes while it starts, before any line of the script
# runs: the start-up fails, or (a .pth file's line, a module lock's callback) it reports the
# interrupt and goes on with the script as if no Ctrl-C had come.
PYTHON_START_FAILURES = ("Fatal Python error: init_", "failed to set __main__.__loader__")
PYTHON_START_IGNORED = ("Error processing line ", "Exception ignored in: <function _get_module_lock")


def before_the_guard(returncode: int, err: str) -> bool:
    """Whether a Ctrl-C landed before the script's start-up guard was in force, where no program
    can catch it: killed by the signal before Python handles signals; Python failing to start
    or reporting the interrupt itself (above); a KeyboardInterrupt with no frame at all (before
    the script's first line ran); or a traceback only through the script's first lines and the
    guard's own import (microgpt_scalar.startup, a millisecond)."""
    if returncode == -signal.SIGINT and err == "" or any(words in err for words in PYTHON_START_FAILURES):
        return True
    if err.strip() == "KeyboardInterrupt":
        return True
    frames = [line.strip() for line in err.splitlines() if line.strip().startswith("File ")]
    guard = ("<frozen ", "site-packages", ", line 0, in <module>", "from microgpt_scalar.startup import",
             "microgpt_scalar/__init__.py", "microgpt_scalar/startup.py")
    lines = [line.strip() for line in err.splitlines()]
    return "Traceback" in err and bool(frames) and all(
        any(mark in frame or mark in lines[lines.index(frame) + 1] for mark in guard) for frame in frames)


def finish_after_ctrl_c(child, seconds: float = 60):
    """(stdout, stderr, whether it took a second Ctrl-C) once `child` ends after a Ctrl-C. If it
    is still running after 15 s, Python may have taken the Ctrl-C while it started and gone
    on (PYTHON_START_IGNORED): a second Ctrl-C, as a user would press, ends it."""
    try:
        child.wait(timeout=15)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGINT)
        return (*finish(child, seconds), True)
    return (*finish(child, seconds), False)


def test_ctrl_c_at_a_random_moment_saves_the_steps_shown_or_nothing(repo_root, tmp_path, children):
    """Ctrl-C at a random moment, half the time from the start of the interpreter, half the
    time once training shows its first step: exit 130 and one line; a checkpoint, when one is
    saved, holds exactly the steps the log shows, and no temporary file is left."""
    data = tmp_path / "names.txt"
    data.write_text(NAMES)
    outcomes = {"saved": 0, "nothing saved": 0, "before the guard": 0}
    for repeat in range(REPEATS):
        save = tmp_path / f"run{repeat}.json"
        child = children.start([*script(repo_root, "train_scalar"), "--data", str(data), "--steps", "100000",
                                *TINY, "--save", str(save)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env(repo_root))
        shown = ""
        if repeat % 2:  # during training
            while not shown.endswith("\n") or not shown.splitlines()[-1].startswith("step "):
                line = child.stdout.readline()
                assert line, child.stderr.read()
                shown += line
            time.sleep(random.uniform(0, 0.15))  # steps of a few milliseconds: tens of them
        else:  # from the interpreter's start, through the imports (a fifth of a second), into training
            time.sleep(random.uniform(0, 0.6))
        child.send_signal(signal.SIGINT)
        out, err, pressed_again = finish_after_ctrl_c(child)
        out = shown + out
        if pressed_again:  # only Python's own start-up may have let the first one go
            assert not shown and any(words in err for words in PYTHON_START_IGNORED), err[-3000:]
            outcomes["before the guard"] += 1
            continue
        if before_the_guard(child.returncode, err):
            assert not shown, err[-3000:]  # a Ctrl-C during training is never too early to catch
            outcomes["before the guard"] += 1
            continue
        line = one_error_line(err)
        assert child.returncode == 130, err
        steps = sum(line.startswith("step ") for line in out.splitlines())
        if save.exists():
            outcomes["saved"] += 1
            assert load_checkpoint(save).step == steps and f"checkpoint of step {steps} saved" in line
        else:
            outcomes["nothing saved"] += 1
            assert "nothing saved" in line or "nothing done" in line, line
        assert temporary_files(tmp_path) == []
    assert outcomes["saved"] >= REPEATS // 2, outcomes  # every Ctrl-C during training saved


LOADING_AT_ONCE = 3  # torch loads in each of 3 processes side by side: one Ctrl-C each, the waits overlap


def test_ctrl_c_while_torch_loads_is_one_line(repo_root, tmp_path, children):
    """A Ctrl-C during `import torch` (seconds long), at a random moment: one line, exit 130.
    Most moments land within the import; its cost (a process loading torch until the Ctrl-C)
    is what each repetition takes, so LOADING_AT_ONCE processes are interrupted side by side."""
    outcomes = {"while starting": 0, "after starting": 0, "before the guard": 0}
    for first in range(0, REPEATS, LOADING_AT_ONCE):
        moments = sorted(random.uniform(0.2, 1.5) for _ in range(min(LOADING_AT_ONCE, REPEATS - first)))
        started = time.monotonic()
        # 500 steps: a run must still be going when its Ctrl-C comes, on a machine fast enough
        # to import torch and take one step within the latest moment
        loading = [children.start([*script(repo_root, "train_torch"), "--steps", "500"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env(repo_root), cwd=tmp_path)
                   for _ in moments]
        for child, moment in zip(loading, moments):
            time.sleep(max(0.0, started + moment - time.monotonic()))
            child.send_signal(signal.SIGINT)
        for child in loading:
            out, err = finish(child)
            if before_the_guard(child.returncode, err):
                outcomes["before the guard"] += 1
                continue
            line = one_error_line(err)
            assert child.returncode == 130 and (line in (
                "error: interrupted while starting; nothing done", "error: interrupted; nothing saved")
                or re.fullmatch(r"error: interrupted after step \d+; nothing saved \(no --save\)", line)), err
            outcomes["while starting" if "while starting" in line else "after starting"] += 1
    assert outcomes["while starting"] >= REPEATS // 3, outcomes  # the moments fell within the import


# --- the commands' outputs ---

@pytest.fixture(scope="module")
def compare_step():
    return load_script("compare_step")


def run_main(module, capsys, *argv):
    capsys.readouterr()
    try:
        code = module.main([str(arg) for arg in argv])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_step_never_writes_its_report_over_an_input(compare_step, tmp_path, capsys, repo_root):
    engine = tmp_path / "my_engine.py"
    engine.write_bytes((repo_root / "microgpt_scalar" / "engine.py").read_bytes())
    data = tmp_path / "names.png"  # a data file may have any name, a plot's format
    data.write_text(NAMES)
    before = engine.read_bytes(), data.read_bytes()
    for argv, flag in ((["--engine", engine, "--json", engine], "--json"),
                       (["--engine", f"{engine}:Value", "--json", engine], "--json"),
                       (["--data", data, "--plot", data], "--plot"),
                       (["--data", data, "--json", data], "--json")):
        code, out, err = run_main(compare_step, capsys, *argv)
        assert (code, out) == (2, "") and "is an input of this run" in one_error_line(err) and flag in err
    assert (engine.read_bytes(), data.read_bytes()) == before
    code, _, err = run_main(compare_step, capsys, "--json", tmp_path / "r.png", "--plot", tmp_path / "r.png")
    assert code == 2 and "this run already writes it as --json" in one_error_line(err)


# --- the torch trainer, its processes forked from one that loaded torch once ---

@pytest.fixture(scope="module")
def torch_workers(repo_root):
    """Workers running train_torch.py's main, each forked from a process that imported torch
    once (tests/preloaded_workers.py): a repetition costs its own work, not an import of torch."""
    started = Children()
    yield PreloadedWorkers(started, env(repo_root))
    started.end_all()


TORCH_TINY = ["--n-embd", "8", "--n-head", "2", "--samples", "0"]  # faithful steps of a few milliseconds


def wait_for_file(path, seconds: float, why, running=lambda: True) -> None:
    """Until `path` exists; fails with `why()` after `seconds`, or once `running()` is false."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline and running(), why()
        time.sleep(0.02)


def worker_output(out) -> tuple:
    return tuple(Path(f"{out}{suffix}").read_text() for suffix in (".out", ".err"))


def test_two_torch_trainers_saving_to_one_file_never_both_write_it(torch_workers, tmp_path):
    """Started together, aiming at one --save file: one run writes it, the other is refused at
    its start in one line, before its first step."""
    data = tmp_path / "names.txt"
    data.write_text(NAMES)
    refusals = set()
    for repeat in range(REPEATS):
        save = tmp_path / f"run{repeat}.pt"
        outs = [tmp_path / f"run{repeat}.{i}" for i in range(2)]
        pids = []
        for out in outs:
            pids.append(torch_workers.start(["--data", data, "--steps", "30", *TORCH_TINY, "--save", save], {}, out))
            time.sleep(random.uniform(0, 0.05))
        results = [(torch_workers.wait(pid, 120), *worker_output(out)) for pid, out in zip(pids, outs)]
        assert sorted(code for code, _, _ in results) == [0, 2], results
        code, out, err = next(result for result in results if result[0] == 2)
        line = one_error_line(err)
        assert out == "" and f"--save {save}" in line, line  # refused before the first step
        refusals.add("another run" if "another run" in line else "exists" if "--overwrite" in line else line)
        assert load_any_checkpoint(save).step == 30
        assert temporary_files(tmp_path) == []
    assert refusals <= {"another run", "exists"}


def test_kill_9_during_torch_training_leaves_a_whole_checkpoint(torch_workers, tmp_path):
    """A torch run saving every step is killed at a random moment: its checkpoint loads whole,
    of a step the log showed; a temporary file left behind carries the dead run's id, and the
    next write to the file removes it."""
    data = tmp_path / "names.txt"
    data.write_text(NAMES)
    strays = 0
    for repeat in range(REPEATS):
        save, out = tmp_path / f"run{repeat}.pt", tmp_path / f"run{repeat}"
        pid = torch_workers.start(["--data", data, "--steps", "100000", *TORCH_TINY, "--save", save,
                                   "--save-every", "1"], {}, out)
        wait_for_file(save, 120, lambda: worker_output(out), lambda: torch_workers.running(pid))
        time.sleep(random.uniform(0, 0.2))
        os.kill(pid, signal.SIGKILL)
        assert torch_workers.wait(pid, 60) == -signal.SIGKILL
        steps = sum(line.startswith("step ") for line in worker_output(out)[0].splitlines())
        assert 1 <= load_any_checkpoint(save).step <= steps  # each step's line is printed before its save
        left = temporary_files(tmp_path)
        strays += len(left)
        assert all(f"-{pid}-" in name for name in left), left
        write_atomically(save, b"next")  # the next write removes what the dead one left
        assert temporary_files(tmp_path) == []
    assert strays <= REPEATS // 10  # nameless temporary files: a name exists only for the rename itself


def test_ctrl_c_at_a_random_moment_of_a_torch_run_saves_the_steps_shown_or_nothing(torch_workers, tmp_path):
    """Ctrl-C at a random moment from the process's start (the modules loaded), through setting
    up, into training: exit 130 and one line; a checkpoint, when one is saved, holds exactly the steps the log
    shows, and no temporary file is left."""
    data = tmp_path / "names.txt"
    data.write_text(NAMES)
    outcomes = {"saved": 0, "nothing saved": 0, "nothing done": 0}
    for repeat in range(REPEATS):
        save, out = tmp_path / f"run{repeat}.pt", tmp_path / f"run{repeat}"
        pid = torch_workers.start(["--data", data, "--steps", "100000", *TORCH_TINY, "--save", save], {}, out)
        time.sleep(random.uniform(0, 0.4))
        os.kill(pid, signal.SIGINT)
        code = torch_workers.wait(pid, 60)
        stdout, err = worker_output(out)
        line = one_error_line(err)
        assert code == 130, (code, err)
        steps = sum(line.startswith("step ") for line in stdout.splitlines())
        if save.exists():
            outcomes["saved"] += 1
            assert load_any_checkpoint(save).step == steps and line.endswith(f"checkpoint of step {steps} saved to {save}")
        else:
            outcomes["nothing done" if "nothing done" in line else "nothing saved"] += 1
            assert line in ("error: interrupted while starting; nothing done", "error: interrupted; nothing saved") \
                and steps == 0, line
        assert temporary_files(tmp_path) == []
    assert outcomes["saved"] >= REPEATS // 3, outcomes  # most moments fell within training


# --- Ctrl-C under torchrun ---

def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def batched_group_argv(data, save) -> list:
    """train_torch.py's flags for a group of two processes training batched, a save each step."""
    return ["--mode", "batched", "--data", data, "--steps", "100000", "--batch-size", "4", "--val-fraction", "0.25",
            "--eval-every", "0", "--samples", "0", "--threads", "1", "--save", save, "--save-every", "1"]


def worker_env(rank: int, port: int) -> dict:
    """The environment torchrun gives worker `rank` of a group of two on this machine."""
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}


def assert_group_stopped_together(codes, outputs, save, folder) -> None:
    """Every process exited 130 after the same step; the first saved that step and said so in
    one line, the other said nothing; the checkpoint is whole and no temporary file is left."""
    assert codes == [130, 130], (codes, outputs)
    errors = [[line for line in err.splitlines() if "error:" in line] for _, err in outputs]
    assert all("Traceback" not in err for _, err in outputs), outputs
    assert len(errors[0]) == 1 and errors[1] == [], errors
    step = load_any_checkpoint(save).step
    assert errors[0][0].endswith(f"error: interrupted after step {step}; checkpoint of step {step} saved to {save}")
    assert outputs[0][0].startswith("num params:") and outputs[1][0] == ""
    assert temporary_files(folder) == []


def test_ctrl_c_under_torchrun_saves_once_and_every_process_exits_130(torch_workers, tmp_path):
    """Ctrl-C reaches every process of a group twice at random moments (the terminal's, where
    the workers share its process group, then the launcher's passing it on): every process
    stops after the same step and exits 130, the first saves that step and says so in one
    line, the other says nothing. The workers are the ones torchrun starts, in its environment,
    forked from a process that loaded torch once (tests/preloaded_workers.py): a repetition
    costs a group's start and a few steps, not two imports of torch."""
    data = tmp_path / "names.txt"
    data.write_text(NAMES)
    workers = torch_workers
    for repeat in range(REPEATS):
        save, port = tmp_path / f"group{repeat}.pt", free_port()
        outs = [tmp_path / f"group{repeat}.{rank}" for rank in range(2)]
        pids = [workers.start(batched_group_argv(data, save), worker_env(rank, port), outs[rank]) for rank in range(2)]
        wait_for_file(save, 120, lambda: [Path(f"{out}.err").read_text()[-2000:] for out in outs],
                      lambda: all(workers.running(pid) for pid in pids))
        time.sleep(random.uniform(0, 0.25))  # the group is in its training loop, a step (and save) in ~30 ms
        for pid in pids:
            os.kill(pid, signal.SIGINT)  # the terminal's Ctrl-C, to the whole group
        time.sleep(random.uniform(0, 0.15))
        for pid in pids:
            os.kill(pid, signal.SIGINT)  # torchrun's launcher, passing it on (an ended process ignores it)
        codes = [workers.wait(pid, 120) for pid in pids]
        outputs = [tuple(Path(f"{out}{suffix}").read_text() for suffix in (".out", ".err")) for out in outs]
        assert_group_stopped_together(codes, outputs, save, tmp_path)


RECORDING_WORKER = """
import os, runpy, sys
script, record = sys.argv.pop(1), os.environ["EXIT_RECORD"] + "." + os.environ["RANK"]
code = "no exit"
try:
    sys.argv[0] = script
    runpy.run_path(script, run_name="__main__")
    code = 0
except SystemExit as exit:
    code = exit.code
except BaseException as error:
    code = repr(error)
    raise
finally:
    with open(record, "w") as file:
        file.write(str(code))
"""


def test_ctrl_c_through_the_torchrun_launcher_itself(repo_root, tmp_path, children):
    """torchrun itself (python -m torch.distributed.run), two processes on the CPU over gloo,
    at a random moment of training: the terminal's Ctrl-C goes to the launcher's process
    group, and the launcher passes it on to each worker (torch 2.13 starts each in a session
    of its own). Both workers exit 130 (each runs train_torch.py as __main__ through a few
    lines that record its exit code), the first saves, the checkpoint is whole. The
    launcher's own exit status and messages are torch's."""
    data = tmp_path / "names.txt"
    data.write_text(NAMES)
    save, logs = tmp_path / "group.pt", tmp_path / "logs"
    worker = tmp_path / "recording_worker.py"
    worker.write_text(RECORDING_WORKER)
    launcher = children.start(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "--log-dir", str(logs), "--redirects", "3",
         str(worker), str(repo_root / "scripts" / "train_torch.py"), *map(str, batched_group_argv(data, save))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**env(repo_root), "OMP_NUM_THREADS": "1", "EXIT_RECORD": str(tmp_path / "exit")})
    wait_for_file(save, 300, lambda: launcher.communicate(timeout=30), lambda: launcher.poll() is None)
    time.sleep(random.uniform(0, 0.5))
    os.killpg(launcher.pid, signal.SIGINT)  # the terminal's Ctrl-C: to every process of its group
    _, launcher_err = launcher.communicate(timeout=120)
    records = [tmp_path / f"exit.{rank}" for rank in range(2)]
    codes = [record.read_text() if record.exists() else "killed, no exit code" for record in records]
    outputs = []
    for rank in range(2):
        files = sorted(logs.glob(f"**/attempt_0/{rank}/std*.log"))
        assert [path.name for path in files] == ["stderr.log", "stdout.log"], (files, launcher_err[-3000:])
        outputs.append((files[1].read_text(), files[0].read_text()))
    assert_group_stopped_together([int(code) if code.lstrip("-").isdigit() else code for code in codes], outputs,
                                  save, tmp_path)


# Loaded by every process of the test below (PYTHONPATH's first folder): a process of the group
# (RANK set) records the exit code its script gives sys.exit, in EXIT_RECORD.RANK.
RECORDING_SITECUSTOMIZE = """
import os, sys
if "RANK" in os.environ:
    _exit = sys.exit

    def _recording_exit(code=None):
        with open(os.environ["EXIT_RECORD"] + "." + os.environ["RANK"], "w") as file:
            file.write(str(code))
        _exit(code)

    sys.exit = _recording_exit
"""


def test_ctrl_c_through_the_processes_flag_exits_130_in_every_process(repo_root, tmp_path, children):
    """`train_torch.py --processes 2` (the project's launcher over torch's elastic one), two
    processes on the CPU over gloo, at a random moment of training: the terminal's Ctrl-C goes
    to the launcher's process group, the launcher passes it on to each process. Every process
    exits 130, the launcher too; its stderr holds one error line, naming the step the first
    process saved, and no traceback; the checkpoint is whole and no temporary file is left."""
    data = tmp_path / "names.txt"
    data.write_text(NAMES)
    save, site = tmp_path / "group.pt", tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(RECORDING_SITECUSTOMIZE)
    launcher = children.start(
        [*script(repo_root, "train_torch"), "--processes", "2", *map(str, batched_group_argv(data, save))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**env(repo_root), "PYTHONPATH": f"{site}{os.pathsep}{repo_root}", "EXIT_RECORD": str(tmp_path / "exit")})
    wait_for_file(save, 300, lambda: launcher.communicate(timeout=30), lambda: launcher.poll() is None)
    time.sleep(random.uniform(0, 0.5))
    os.killpg(launcher.pid, signal.SIGINT)  # the terminal's Ctrl-C: to every process of its group
    out, err = launcher.communicate(timeout=120)
    records = [tmp_path / f"exit.{rank}" for rank in range(2)]
    codes = [record.read_text() if record.exists() else "killed, no exit code" for record in records]
    assert (launcher.returncode, codes) == (130, ["130", "130"]), err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    step = load_any_checkpoint(save).step
    errors = [line for line in err.replace("\r", "\n").splitlines() if "error" in line.lower()]
    assert errors == [f"error: interrupted; checkpoint of step {step} saved to {save}"], err[-3000:]
    assert out.startswith("num params:") and out.count("num params:") == 1
    assert temporary_files(tmp_path) == []
