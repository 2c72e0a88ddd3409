"""`microgpt_scalar` needs only the standard library: every submodule imports, trains a step,
samples and runs the training script in a Python where torch, numpy and tqdm cannot be
imported, its progress drawn on a terminal too; and no file in it names a module outside the
standard library, not even as an optional import.

    pytest tests/test_scalar_stdlib_only.py
"""
from __future__ import annotations

import ast
import fcntl
import json
import os
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

BLOCKED = ("torch", "numpy", "tqdm")

# Runs in a fresh interpreter: argv = [package, data file, training script]. A finder at the
# front of sys.meta_path refuses the blocked names before any other finder can find them.
HARNESS = r'''
import importlib, json, pkgutil, runpy, sys
BLOCKED = {blocked!r}


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is made unimportable for this test", name=name)
        return None


already = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not already, f"imported before the block was in place: {{already}}"
sys.meta_path.insert(0, Refuse())
package_name, data, script = sys.argv[1:4]
package = importlib.import_module(package_name)
modules = sorted(m.name for m in pkgutil.walk_packages(package.__path__, package_name + "."))
for name in modules:
    importlib.import_module(name)
report = {{"file": package.__file__, "modules": modules, "losses": {{}}, "samples": {{}}}}
if package_name == "microgpt_scalar":
    from microgpt_scalar.config import get_config
    from microgpt_scalar.engine import Value
    from microgpt_scalar.train import sample, start_run, train_step
    engines = {{"per-op": Value}}
    if "microgpt_scalar.fused" in modules:
        engines["fused"] = importlib.import_module("microgpt_scalar.fused").FusedValue
    for engine, value_cls in engines.items():
        docs, tokenizer, model, optimizer, rng = start_run(["anna", "bob", "cab"], get_config(num_steps=2), 42, value_cls)
        report["losses"][engine] = [train_step(model, optimizer, tokenizer.encode(docs[s]), s) for s in range(2)]
        report["samples"][engine] = sample(model, tokenizer, rng)
        sys.argv = [script, "--data", data, "--steps", "2", "--samples", "1", "--value-class", engine]
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as done:
            assert done.code == 0, f"the script exited with {{done.code}}"
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, f"blocked modules were imported: {{leaked}}"
print("REPORT " + json.dumps(report))
'''.format(blocked=set(BLOCKED))


def run_harness(package: str, pythonpath, data: Path, script: Path, stderr=subprocess.PIPE):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    return subprocess.run([sys.executable, "-c", HARNESS, package, str(data), str(script)], env=env,
                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300, cwd=data.parent)


def on_a_terminal(run) -> tuple:
    """(`run(terminal)`'s result, the bytes shown on the terminal), for a `run` that gives a
    pseudo-terminal of 80 columns to a process as its stderr."""
    main, side = os.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    shown = []

    def read_all():  # while the process runs, so that it never waits on a full terminal
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the last writer has gone
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    try:
        result = run(side)
    finally:
        os.close(side)
        reader.join(timeout=10)
        os.close(main)
    return result, b"".join(shown)


def report_of(result) -> dict:
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def test_package_imports_trains_and_runs_the_script_without_torch_numpy_tqdm(repo_root, tmp_path):
    data = tmp_path / "docs.txt"
    data.write_text("anna\nbob\ncab\n")
    result = run_harness("microgpt_scalar", [repo_root], data, repo_root / "scripts" / "train_scalar.py")
    report = report_of(result)
    assert Path(report["file"]).resolve() == (repo_root / "microgpt_scalar" / "__init__.py").resolve()
    files = sorted(p.stem for p in (repo_root / "microgpt_scalar").glob("*.py") if p.stem != "__init__")
    assert report["modules"] == [f"microgpt_scalar.{stem}" for stem in files]  # every submodule, fused too if present
    for engine, losses in report["losses"].items():
        assert len(losses) == 2 and all(0 < loss < 10 for loss in losses), engine
    assert result.stdout.count("num params: ") == len(report["losses"])  # the script ran once per engine
    if "fused" in report["losses"]:  # the engines give the same numbers
        assert report["losses"]["fused"] == report["losses"]["per-op"]
        assert report["samples"]["fused"] == report["samples"]["per-op"]


def test_script_shows_progress_on_a_terminal_without_tqdm_and_the_same_log(repo_root, tmp_path):
    """With stderr a terminal, the training script draws its progress there, in a Python where
    tqdm cannot be imported; stdout is byte for byte the log printed with stderr a pipe."""
    data = tmp_path / "docs.txt"
    data.write_text("anna\nbob\ncab\n")
    script = repo_root / "scripts" / "train_scalar.py"
    piped = run_harness("microgpt_scalar", [repo_root], data, script)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr  # nothing drawn on a pipe
    on_terminal, shown = on_a_terminal(lambda terminal: run_harness("microgpt_scalar", [repo_root], data, script,
                                                                    stderr=terminal))
    assert on_terminal.returncode == 0, shown.decode(errors="replace")
    assert on_terminal.stdout == piped.stdout
    engines = len(report_of(piped)["losses"])
    assert shown.startswith(b"\r\x1b[K0/2 steps (0%)") and shown.count(b"2/2 steps (100%)") == engines, shown
    assert shown.endswith(b"\r\x1b[K") and b"step    1 /" not in shown  # wiped at the end; log lines on stdout only


def test_harness_fails_a_package_that_imports_numpy(tmp_path):
    """The check can fail: a package whose submodule imports numpy does not get through."""
    package = tmp_path / "leaky"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "fast.py").write_text("import numpy\n")
    data = tmp_path / "docs.txt"
    data.write_text("anna\n")
    result = run_harness("leaky", [tmp_path], data, tmp_path / "unused.py")
    assert result.returncode != 0
    assert "numpy is made unimportable" in result.stderr


def imported_roots(source: str) -> set[str]:
    """The top-level names of every absolute import in `source`, at any depth of the file, an
    optional one inside a `try` that catches ImportError too (the package needs none: a
    feature that exists only where some other package is installed is not in it)."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_import_scan_sees_imports_guarded_by_import_error():
    source = ("try:\n    from tqdm import tqdm\nexcept ImportError:\n    tqdm = None\n"
              "try:\n    import numpy\nexcept ValueError:\n    pass\n")
    assert imported_roots(source) - set(sys.stdlib_module_names) == {"numpy", "tqdm"}


def test_every_import_in_the_package_is_standard_library_or_its_own(repo_root):
    allowed = set(sys.stdlib_module_names) | {"microgpt_scalar", "__future__"}
    for path in sorted((repo_root / "microgpt_scalar").glob("*.py")):
        outside = imported_roots(path.read_text()) - allowed
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_import_scan_sees_imports_inside_functions():
    source = "import math\nfrom . import engine\n\ndef fast():\n    import numpy as np\n    from torch.nn import Linear\n"
    assert imported_roots(source) - set(sys.stdlib_module_names) == {"numpy", "torch"}
