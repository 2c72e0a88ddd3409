"""Nothing a run writes is lost or replaces what it must not: the output checks before step 1,
the refusals to overwrite, Ctrl-C saving a checkpoint, and a resumed run refusing settings or
data other than its own.

    pytest tests/test_run_safety.py
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from helpers import load_script

from microgpt_scalar.checkpoint import load_checkpoint
from microgpt_scalar.cli import check_output_path
from microgpt_scalar.files import FileError, write_atomically, writer_id
from microgpt_torch.checkpoint import load_any_checkpoint

NAMES = "anna\nbob\ncab\ndan\nada\nbea\ncarl\ndora\nemma\nfinn\ngus\nhal\nida\njo\nkay\nlea\n"


@pytest.fixture(scope="module")
def train_torch():
    return load_script("train_torch")


@pytest.fixture(scope="module")
def train_scalar():
    return load_script("train_scalar")


def run_main(module, capsys, *argv):
    """(exit code, stdout, stderr without the trainer's line about threads)."""
    capsys.readouterr()
    try:
        code = module.main([str(arg) for arg in argv])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, "".join(line for line in err.splitlines(keepends=True) if not line.startswith("threads: "))


def names_file(folder, text=NAMES, name="names.txt"):
    path = folder / name
    path.write_text(text)
    return path


def assert_refused(result, *words):
    code, out, err = result
    assert (code, out) == (2, ""), err  # refused before the first step: no log line at all
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


# --- output paths, checked before any work ---

def test_check_output_path_refuses_what_must_not_be_replaced(tmp_path):
    data = names_file(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "old.json").write_text("{}")
    cases = {
        "the data file": (data, "input of this run"),
        "a directory": (tmp_path / "folder", "not a regular file"),
        "a device": ("/dev/null", "not a regular file"),
        "a link": (tmp_path / "link", "is a link"),
        "an earlier run's file": (tmp_path / "old.json", "--overwrite"),
    }
    for what, (path, words) in cases.items():
        with pytest.raises(FileError, match=words):
            check_output_path(path, "--save", inputs=[data])
    check_output_path(tmp_path / "old.json", "--save", inputs=[data], overwrite=True)
    check_output_path(tmp_path / "old.json", "--save", inputs=[data], may_replace=[tmp_path / "old.json"])
    check_output_path(tmp_path / "new" / "deeper" / "run.json", "--save")  # directories are made when saving
    assert not (tmp_path / "new").exists()  # ... not by the check
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "link", "names.txt", "old.json"]  # probe removed


@pytest.mark.parametrize("trainer", ["train_scalar", "train_torch"])
@pytest.mark.parametrize("target", ["data", "device", "link", "directory", "earlier_run"])
def test_trainers_refuse_to_overwrite_before_step_1(trainer, target, tmp_path, capsys, request):
    data = names_file(tmp_path)
    earlier = tmp_path / "earlier.json"
    earlier.write_text('{"an": "earlier run"}')
    (tmp_path / "folder").mkdir()
    (tmp_path / "link.json").symlink_to(earlier)
    path, words = {
        "data": (data, ["input of this run"]),
        "device": ("/dev/null", ["not a regular file"]),
        "link": (tmp_path / "link.json", ["is a link"]),
        "directory": (tmp_path / "folder", ["not a regular file"]),
        "earlier_run": (earlier, ["exists", "--overwrite"]),
    }[target]
    before = data.read_bytes(), earlier.read_bytes()
    script = request.getfixturevalue(trainer)
    assert_refused(run_main(script, capsys, "--data", data, "--steps", 2, "--samples", 0, "--save", path),
                   "--save", *words)
    assert (data.read_bytes(), earlier.read_bytes()) == before and (tmp_path / "link.json").is_symlink()
    if target == "earlier_run":  # unless asked to
        code, _, err = run_main(script, capsys, "--data", data, "--steps", 2, "--samples", 0, "--save", path,
                                "--overwrite")
        assert code == 0, err
        assert load_any_checkpoint(earlier).step == 2


def read_only_directory_command(folder, command):
    """`command` run with `folder` read-only: a read-only bind mount in a private mount namespace
    when run as root (who writes in any directory whatever its mode), else the folder's mode."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return command
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("running as root without mount namespaces: no directory is read-only to root here")
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(folder), *command]


@pytest.mark.parametrize("script, args, flag", [
    ("train_scalar.py", ["--steps", "3", "--save"], "--save"),
    ("train_torch.py", ["--steps", "3", "--save"], "--save"),
    ("compare_step.py", ["--json"], "--json"),
])
def test_read_only_directory_fails_before_step_1(script, args, flag, repo_root, tmp_path):
    data = names_file(tmp_path)
    folder = tmp_path / "read-only"
    folder.mkdir()
    command = [sys.executable, str(repo_root / "scripts" / script), "--data", str(data), *args, str(folder / "out")]
    command = read_only_directory_command(folder, command)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert_refused((result.returncode, result.stdout, result.stderr), flag, "cannot write in", str(folder))
    assert list(folder.iterdir()) == []


def test_a_write_removes_only_leftovers_of_its_own_id_or_of_dead_writers(tmp_path, monkeypatch, children):
    target = tmp_path / "run.json"
    target.write_bytes(b"old")
    sleeper = children.start([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = children.start([sys.executable, "-c", "pass"])
    gone.wait()
    host = writer_id().rsplit("-", 1)[0]
    names = {
        "own": f".run.json.{writer_id()}-0000aaaa.tmp",  # an earlier process with this id, crashed
        "dead": f".run.json.{host}-{gone.pid}-0000bbbb.tmp",  # a writer of this host that no longer runs
        "live": f".run.json.{host}-{sleeper.pid}-0000cccc.tmp",  # a writer still running: not ours
        "other_host": f".run.json.elsewhere-{gone.pid}-0000dddd.tmp",  # cannot tell from here
        "other_file": f".other.json.{writer_id()}-0000eeee.tmp",  # another file's
        "no_id": ".run.json.k2j4_x.tmp",  # no writer id: not ours
    }
    try:
        for name in names.values():
            (tmp_path / name).write_bytes(b"half")

        def killed(src, dst):
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C at the rename: the old file stays, no new leftover
            write_atomically(target, b"new")
        monkeypatch.undo()
        kept = sorted([names[key] for key in ("live", "other_host", "other_file", "no_id")] + ["run.json"])
        assert target.read_bytes() == b"old"
        assert sorted(p.name for p in tmp_path.iterdir()) == kept  # no temporary file of this write
        write_atomically(target, b"new")
        assert target.read_bytes() == b"new"
        assert sorted(p.name for p in tmp_path.iterdir()) == kept
    finally:
        sleeper.kill()
        sleeper.wait()


def test_json_report_is_written_atomically(tmp_path, monkeypatch):
    from compare import compare_step, save_report

    report = compare_step()
    path = tmp_path / "report.json"
    path.write_text("earlier report")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(FileError, match=f"cannot write {path}: No space left on device"):
        save_report(path, report)
    assert path.read_text() == "earlier report" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


# --- Ctrl-C ---

@pytest.mark.parametrize("script, first_line", [
    ("train_scalar.py", "num docs:"),
    ("train_torch.py", "num docs:"),
])
def test_ctrl_c_saves_a_checkpoint_of_the_steps_done_and_exits_in_one_line(script, first_line, repo_root, tmp_path,
                                                                            children):
    data = names_file(tmp_path)
    save = tmp_path / "run.json"
    child = children.start([sys.executable, str(repo_root / "scripts" / script), "--data", str(data),
                            "--steps", "1000000", "--samples", "0", "--save", str(save)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(repo_root)})
    lines = []
    try:
        while len(lines) < 6:  # the header, then some steps
            line = child.stdout.readline()
            assert line, child.stderr.read()
            lines.append(line)
        child.send_signal(signal.SIGINT)
        child.wait(timeout=300)  # then read through the file objects: readline() may hold lines already read
        out, err = child.stdout.read(), child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
    steps = [line for line in lines + out.splitlines(keepends=True) if line.startswith("step ")]
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("threads: "))
    assert child.returncode == 130
    assert err == f"error: interrupted after step {len(steps)}; checkpoint of step {len(steps)} saved to {save}\n"
    assert lines[0].startswith(first_line) and "Traceback" not in err
    assert load_any_checkpoint(save).step == len(steps)  # every step the log shows, and no other
    assert sorted(p.name for p in tmp_path.iterdir()) == ["names.txt", "run.json"]


def test_ctrl_c_without_save_says_nothing_was_saved(repo_root, tmp_path, children):
    data = names_file(tmp_path)
    child = children.start([sys.executable, str(repo_root / "scripts" / "train_scalar.py"), "--data", str(data),
                            "--steps", "1000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(repo_root)})
    try:
        while not child.stdout.readline().startswith("step "):
            pass
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130
    assert err.count("\n") == 1 and err.startswith("error: interrupted after step ") and "nothing saved" in err


# --- resuming refuses another run's settings ---

BATCHED = ["--mode", "batched", "--batch-size", 4, "--val-fraction", 0.25, "--eval-every", 0, "--samples", 0]


@pytest.fixture()
def batched_run(train_torch, tmp_path, capsys):
    data = names_file(tmp_path)
    save = tmp_path / "run.pt"
    code, _, err = run_main(train_torch, capsys, "--data", data, *BATCHED, "--steps", 2, "--save", save)
    assert code == 0, err
    return data, save


def with_flag(args, flag, value):
    """`args` with `flag` given `value` instead (True: a flag without a value)."""
    args = list(args)
    if flag in args:
        del args[args.index(flag):args.index(flag) + 2]
    return args + ([flag] if value is True else [flag, value])


@pytest.mark.parametrize("flag, value, words", [
    ("--batch-size", 8, ["--batch-size 4, not 8"]),
    ("--val-fraction", 0.5, ["--val-fraction 0.25, not 0.5"]),
    ("--group-by-length", True, ["--group-by-length off, not on"]),
    ("--mode", "faithful", ["--mode batched, not faithful"]),
    ("--dtype", "float64", ["--dtype float32, not float64"]),
    ("--data", "other", ["another data file", "sha256"]),
])
def test_resume_refuses_each_changed_setting_in_one_line(flag, value, words, batched_run, train_torch, tmp_path,
                                                         capsys):
    data, save = batched_run
    saved = save.read_bytes()
    if flag == "--data":  # the same characters, another order: the vocabulary alone cannot tell
        value = names_file(tmp_path, "".join(reversed(NAMES.splitlines(keepends=True))), "other.txt")
    args = with_flag(["--data", data, *BATCHED, "--steps", 2], flag, value)
    assert_refused(run_main(train_torch, capsys, *args, "--resume", save, "--save", save), *words)
    assert save.read_bytes() == saved
    code, _, err = run_main(train_torch, capsys, "--data", data, *BATCHED, "--steps", 2, "--resume", save)
    assert code == 0, err  # the same settings resume


def test_scalar_load_refuses_another_data_file(train_scalar, tmp_path, capsys):
    data = names_file(tmp_path)
    save = tmp_path / "run.json"
    assert run_main(train_scalar, capsys, "--data", data, "--steps", 4, "--stop-after", 2, "--samples", 0,
                    "--save", save)[0] == 0
    other = names_file(tmp_path, NAMES.replace("anna\n", "anna\nanna\n"), "other.txt")
    assert_refused(run_main(train_scalar, capsys, "--data", other, "--resume", save), "another data file")
    assert_refused(run_main(train_scalar, capsys, "--data", data, "--resume", save, "--seed", 7), "--seed 42, not 7")
    code, out, err = run_main(train_scalar, capsys, "--data", data, "--resume", save, "--samples", 0)
    assert code == 0 and out.splitlines()[-1].startswith("step    4 /    4 | loss "), err


def test_checkpoint_without_a_run_record_still_loads(train_scalar, tmp_path, capsys):
    data = names_file(tmp_path)
    save = tmp_path / "run.json"
    assert run_main(train_scalar, capsys, "--data", data, "--steps", 4, "--stop-after", 2, "--samples", 0,
                    "--save", save)[0] == 0
    payload = json.loads(save.read_text())
    del payload["run"]  # as written before runs were recorded
    save.write_text(json.dumps(payload))
    other = names_file(tmp_path, NAMES.replace("anna\n", "anna\nanna\n"), "other.txt")
    assert load_checkpoint(save).run is None
    code, _, err = run_main(train_scalar, capsys, "--data", other, "--resume", save, "--samples", 0)
    assert code == 0, err

