"""A whole class at once: `certify --engines` on a folder of 14 engines, 2 at a time, each in
a single check's sandbox (--max-memory, --max-cpu, the wall-clock --timeout). Right engines
pass, wrong ones fail with their likely cause, missing operations are named, and an engine
that allocates without bound, forks, sleeps forever or writes outside its folder ends as one
row of its own, the others unaffected, nothing written and no process left behind. The HTML
page is rendered in headless Chromium.

Oracles: torch and the golden trace (through the checker) for the right and wrong engines;
the engines' own misbehaviour, written here, for the rest.

    pytest tests/test_certify_class.py
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest
from helpers import LEARNER_ENGINE, REPO, load_script

from compare.classroom import SubmissionError, find_submissions
from compare.judge.diagnosis import title

ENGINES = REPO / "tests" / "engines"
BACKWARD = "    def backward(self):\n"
BASE = (ENGINES / "local_gradients.py").read_text()


def with_backward_prelude(body: str) -> str:
    """The local-gradient engine with `body` run first thing in backward."""
    assert BASE.count(BACKWARD) == 1
    return BASE.replace(BACKWARD, BACKWARD + body)


def wrong(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    """14 engines and what `certify --engines` made of them: (exit code, stdout, out dir, expected)."""
    root = tmp_path_factory.mktemp("course")
    subs, out, outside = root / "submissions", root / "results", root / "outside"
    subs.mkdir()
    outside.mkdir()
    expected = {}
    right = {"learner": LEARNER_ENGINE.read_text(), "closures": (ENGINES / "closures.py").read_text(),
             "dict_graph": (ENGINES / "dict_graph.py").read_text(), "local": BASE}
    for i, style in enumerate(right):  # a right engine of each of four styles
        name = f"right_{i:02d}_{style}"
        (subs / f"{name}.py").write_text(right[style])
        expected[name] = "AGREE"
    wrongs = {"exp_grad": ("(math.exp(self.data),))", "(1.0,))"),
              "mul_grad": ("(other.data, self.data))", "(self.data, other.data))"),
              "relu_grad": ("(float(self.data > 0),))", "(1.0,))"),
              "log_grad": ("(1 / self.data,))", "(self.data,))")}
    for name, (old, new) in wrongs.items():
        (subs / f"wrong_{name}.py").write_text(wrong(old, new))
        expected[f"wrong_{name}"] = "DISAGREE"
    (subs / "missing_log_exp.py").write_text((ENGINES / "without_log_exp.py").read_text())
    expected["missing_log_exp"] = "MISSING"
    student = subs / "student_folder"  # a submission folder: its engine imports its own config
    shutil.copytree(ENGINES / "sibling", student)
    expected["student_folder"] = "AGREE"
    victim = subs / "right_00_learner.py"
    misbehaving = {
        "hog": ("        global HOARD  # kept from one backward to the next: a leak, full from the first\n"
                "        HOARD = globals().get('HOARD', [])\n"
                "        while True:\n            HOARD.append(bytearray(64 * 2**20))\n"),
        "forks": "        import os, time\n        if os.fork() == 0:\n            time.sleep(10**6)\n",
        "sleeps": "        import time\n        time.sleep(10**6)\n",
        "writer": (f"        open({str(outside / 'written.txt')!r}, 'w').write('x')\n"
                   f"        open({str(victim)!r}, 'w').write('broken')\n"
                   f"        open({str(out / 'class.csv')!r}, 'w').write('forged')\n"),
    }
    for name, body in misbehaving.items():
        (subs / f"bad_{name}.py").write_text(with_backward_prelude(body))
        expected[f"bad_{name}"] = "ERROR"
    assert len(expected) == 14
    victim_text = victim.read_text()
    main = load_script("certify").main
    here = os.getcwd()
    temp = tempfile.mkdtemp(prefix="class-engines-")  # every engine's private folder, and so its process, marked by this
    os.chmod(temp, 0o755)  # a folder the sandbox can reach (pytest's own are the owner's only)
    os.chdir(root)  # --out relative to where the command runs, as an instructor types it
    os.environ["TMPDIR"], tempfile.tempdir = temp, temp
    try:
        code = main(["--engines", "submissions", "--jobs", "2", "--steps", "1", "--timeout", "30", "--max-cpu", "60",
                     "--max-memory", "768", "--out", "results"])
    finally:
        os.chdir(here)
        del os.environ["TMPDIR"]
        tempfile.tempdir = None
    yield code, out, expected, (victim, victim_text, temp), outside
    shutil.rmtree(temp, ignore_errors=True)


def processes_marked(marker: str) -> list:
    """The processes whose environment names `marker` (TMPDIR of the engines' processes), but
    multiprocessing's resource tracker, which the checkers' pool leaves to this process."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as environ, open(f"/proc/{entry}/cmdline", "rb") as command:
                    if marker.encode() in environ.read() and b"resource_tracker" not in command.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_each_engine_ends_as_its_own_row(class_run):
    code, out, expected, _, _ = class_run
    rows = json.loads((out / "class.json").read_text())["engines"]
    got = {row["engine"]: row["verdict"] for row in rows}
    assert got == expected, {name: (got.get(name), want) for name, want in expected.items() if got.get(name) != want}
    assert code == 1  # not every engine passes
    by_name = {row["engine"]: row for row in rows}
    assert by_name["missing_log_exp"]["missing"] == ["log", "exp"]
    assert by_name["bad_sleeps"]["cause"].startswith(title("slow-backward"))  # the diagnosis...
    assert "did not finish" in (out / "reports" / "bad_sleeps.txt").read_text()  # ...of a step stopped
    for name, operator in (("exp_grad", "exp"), ("mul_grad", "*"), ("relu_grad", "relu"), ("log_grad", "log")):
        cause = by_name[f"wrong_{name}"]["cause"]  # the likeliest cause, and the line of the student's file
        assert cause.startswith(f"{title('local-gradient ' + operator)}: ") and f"wrong_{name}.py, line " in cause
    assert "tried to start a process" in by_name["bad_forks"]["cause"]
    assert "tried to write" in by_name["bad_writer"]["cause"]
    # out of memory (MemoryError) or stopped first with its memory grown, as fast as the machine gives memory
    assert by_name["bad_hog"]["cause"].startswith(title("memory"))
    assert "bad_hog.py, line " in (out / "reports" / "bad_hog.txt").read_text()
    assert "lm_head" in by_name["wrong_exp_grad"]["worst_tensor"] and by_name["wrong_exp_grad"]["worst_excess"] > 1
    for row in rows:  # the private copies' paths never reach the report
        report = (out / "reports" / f"{row['engine']}.txt").read_text()
        assert "microgpt-class-" not in (row["cause"] or "") + report, row["engine"]


def test_the_misbehaving_engines_harm_nothing_else(class_run):
    code, out, expected, (victim, victim_text, temp), outside = class_run
    deadline = time.monotonic() + 10
    while processes_marked(temp) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_marked(temp) == []  # nothing an engine started lives on
    assert not (outside / "written.txt").exists() and victim.read_text() == victim_text  # nothing written outside
    rows = list(csv.DictReader((out / "class.csv").open()))  # nor over the class's table
    assert len(rows) == len(expected) and {row["engine"] for row in rows} == set(expected)
    assert {row["engine"]: row["verdict"] for row in rows}["right_00_learner"] == "AGREE"


def test_the_table_the_csv_and_the_reports(class_run, capsys):
    _, out, expected, _, _ = class_run
    header = (out / "class.csv").read_text().splitlines()[0]
    assert header.startswith("engine,verdict,agrees,exit_code,cause,missing,worst_tensor")
    for name in expected:
        assert (out / "reports" / f"{name}.txt").read_text().strip()
    assert (out / "plots" / "right_01_closures.png").stat().st_size > 10_000  # a gradient plot
    import re

    images = re.findall(r'<img src="([^"]+)"', (out / "index.html").read_text())
    plotted = [row["plot"] for row in json.loads((out / "class.json").read_text())["engines"] if row.get("plot")]
    assert len(plotted) == 9  # every engine that got through a step: four right, four wrong, the folder
    assert images == plotted and all((out / image).is_file() for image in images)  # the page finds its plots


def find_chromium():
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


def test_the_page_renders_in_a_headless_browser(class_run, tmp_path):
    browser = find_chromium()
    if browser is None:
        pytest.skip("no headless Chromium here (apt-get install chromium): the page is not rendered")
    _, out, expected, _, _ = class_run
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000"]
    page = (out / "index.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="class-table">' in dom.stdout
    assert dom.stdout.count("<tr><td><a href=\"#engine-") == len(expected)
    assert all(f'id="engine-{name}"' in dom.stdout for name in expected)
    shot = tmp_path / "page.png"
    done = subprocess.run([*flags, f"--screenshot={shot}", page], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_engines_named_by_glob_folder_and_file(tmp_path):
    for name in ("a.py", "b.py", "test_a.py", "conftest.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "engine.py").write_text("")
    (tmp_path / "folder" / "helpers.py").write_text("")
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "x.py").write_text("")
    (tmp_path / "two" / "y.py").write_text("")
    found = find_submissions([str(tmp_path)])
    assert [s.name for s in found] == ["a", "b", "folder", "two"]
    assert found[2].path.name == "engine.py" and found[3].problem  # two files, none named engine.py
    assert [s.name for s in find_submissions([str(tmp_path / "*.py")])] == ["a", "b", "conftest", "test_a"]
    by_class = find_submissions([f"{tmp_path / 'a.py'}:Scalar", str(tmp_path / "a.py")])
    assert [(s.name, s.class_name) for s in by_class] == [("a", "Scalar"), ("a-2", "")]
    with pytest.raises(SubmissionError, match="no such file"):
        find_submissions([str(tmp_path / "none.py")])
    with pytest.raises(SubmissionError, match="no file matches"):
        find_submissions([str(tmp_path / "*.txt")])


@pytest.mark.parametrize("argv, words", [
    ([], "--engine"),
    (["--engine", "x.py", "--engines", "y.py"], "not allowed with"),
    (["--engines", "nowhere/"], "no such file"),
    (["--engines", "x.py", "--n-layer", "2"], "need --engine"),
])
def test_class_usage_errors_are_one_line(tmp_path, capsys, argv, words):
    (tmp_path / "x.py").write_text("")
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        try:
            code = load_script("certify").main(argv)
        except SystemExit as exit:  # argparse's own refusals
            code = exit.code
        assert code == 2
    finally:
        os.chdir(here)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err
