"""Loading a learner's file: what runs, what does not, and what is put back afterwards.

Oracle: the statements of hand-written files, the files and sockets they would leave behind
or open had they run, and the interpreter state before loading.
"""
from __future__ import annotations

import ast
import math
import os
import sys

import pytest

from compare.engine.loader import EngineError, engine_style, import_learner_file, load_engine_file
from compare.engine.statements import explain_name_error


def write(tmp_path, text: str, name: str = "engine.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_statement_runs_and_those_that_reach_out_write_or_run_on_are_skipped_and_listed(tmp_path):
    """Decided by what each statement does when it runs: the harmless ones all run, whatever
    they call; a download, a subprocess, a file written, a second of training are stopped."""
    path = write(tmp_path, (
        '"""doc"""\nimport math, logging, socket, subprocess, time, urllib.request\n'
        "logger = logging.getLogger(__name__)\n"  # 3: a logger, made by a call of its own
        "LN2 = math.log(2.0)\n"
        "urllib.request.urlopen('http://127.0.0.1:9/names.txt')\n"  # 5
        "socket.create_connection(('127.0.0.1', 9))\n"  # 6
        "subprocess.run(['true'])\n"  # 7
        "log = open('train.log', 'w')\n"  # 8
        "while True:\n    time.sleep(0.01)\n"  # 9: trains for ever
        "class Value:\n    pass\n"
        "ONE = Value()\n"  # 13: a constant Value after the class
        "docs = open('input.txt').read()\n"  # 14: no such file
        "vocab = len(docs)\n"))  # 15: needs what line 14 would have made
    before = sorted(p.name for p in tmp_path.iterdir())
    module, notes, skipped = import_learner_file(path, budget=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert isinstance(module.logger, __import__("logging").Logger) and module.LN2 == math.log(2.0)
    assert isinstance(module.ONE, module.Value)
    reasons = {line.line: line.reason for line in skipped}
    assert sorted(reasons) == [5, 6, 7, 8, 9, 14, 15]
    assert "reaches the network" in reasons[5] and "reaches the network" in reasons[6]
    assert "starts or signals a process" in reasons[7] and "writes a file (train.log)" in reasons[8]
    assert "still running after 0.5 s" in reasons[9] and "FileNotFoundError" in reasons[14]
    assert "NameError: name 'docs' is not defined, defined by line 14, which was skipped" in reasons[15]
    assert not hasattr(module, "log") and not hasattr(module, "docs")  # a skipped statement defines nothing
    assert [line.text for line in skipped][0] == "urllib.request.urlopen('http://127.0.0.1:9/names.txt')"


def test_a_name_error_for_a_skipped_name_says_which_line_defined_it(tmp_path):
    path = write(tmp_path, "import math\nSCALE = open('missing.txt').read()\nclass Value:\n    pass\n")
    _, _, skipped = import_learner_file(path)
    said = explain_name_error("raised NameError: name 'SCALE' is not defined", skipped)
    assert said.startswith("raised NameError: name 'SCALE' is not defined (line 2, which defines it, was skipped")
    assert "FileNotFoundError" in said
    assert explain_name_error("raised NameError: name 'other' is not defined", skipped).endswith("not defined")


def test_the_file_is_compiled_with_its_own_future_imports_only(tmp_path):
    """The checker's own `from __future__ import annotations` must not make a file load that
    plain Python cannot import, nor change what its annotations are."""
    plain = write(tmp_path, "class Value:\n    def f(self) -> Undefined:\n        pass\n", "plain.py")
    _, _, skipped = import_learner_file(plain)
    assert [line.line for line in skipped] == [1] and "NameError: name 'Undefined'" in skipped[0].reason
    lazy = write(tmp_path, "from __future__ import annotations\nclass Value:\n    def f(self) -> Undefined:\n"
                           "        pass\n", "lazy.py")
    module, _, skipped = import_learner_file(lazy)
    assert skipped == [] and module.Value.f.__annotations__ == {"return": "Undefined"}


def test_a_file_with_a_main_guard_loads_whole_and_without_a_note(tmp_path):
    path = write(tmp_path, "class Value:\n    pass\n\nif __name__ == '__main__':\n    raise SystemExit('trained')\n")
    module, notes, skipped = import_learner_file(path)
    assert isinstance(module.Value, type) and notes == [] and skipped == []


def test_a_file_that_prints_at_import_gets_one_note(tmp_path):
    path = write(tmp_path, "import random\nrandom.seed(1)\nprint('training')\nclass Value:\n    pass\n")
    module, notes, skipped = import_learner_file(path)
    assert isinstance(module.Value, type) and skipped == []
    assert notes == [f"{path} printed 1 line(s) while loading (not shown)"]


def test_an_error_at_import_is_a_skipped_line_and_a_missing_class_names_it(tmp_path):
    path = write(tmp_path, "import math\n\nscale = 1 / 0\nclass Value:\n    pass\n")
    _, _, skipped = import_learner_file(path)
    assert [(line.line, line.reason) for line in skipped] == [(3, "ZeroDivisionError: division by zero")]
    path = write(tmp_path, "import math\n\nscale = 1 / 0\n", "noclass.py")
    with pytest.raises(EngineError, match=r"has no class Value .*skipped while loading: line 3 `scale = 1 / 0` "
                                          r"\(ZeroDivisionError: division by zero\)$") as error:
        load_engine_file(str(path))
    assert [line.line for line in error.value.skipped] == [3]
    path = write(tmp_path, "class Value:\n    def f(self)\n        pass\n", "syntax.py")
    with pytest.raises(EngineError, match=rf"^cannot import {path}, line 2: SyntaxError"):
        import_learner_file(path)


def test_interpreter_state_is_put_back_and_printing_is_kept_out(tmp_path, capsys):
    (tmp_path / "helper.py").write_text(
        "import os, sys\nsys.setrecursionlimit(150)\nsys.argv.append('--x')\nSEEN = list(sys.argv)\n"
        "os.chdir('/')\nprint('hello')\n")
    path = write(tmp_path, "from helper import SEEN\nclass Value:\n    pass\n")
    before = (sys.getrecursionlimit(), list(sys.argv), list(sys.path), os.getcwd())
    module, notes, _ = import_learner_file(path)
    assert (sys.getrecursionlimit(), list(sys.argv), list(sys.path), os.getcwd()) == before
    assert module.SEEN == [str(path), "--x"]  # it saw itself as the whole command line
    assert capsys.readouterr() == ("", "")
    assert notes == [f"{path} printed 1 line(s) while loading (not shown)"]


def test_sys_exit_at_import_is_a_refusal_not_an_exit(tmp_path):
    path = write(tmp_path, "import sys\nclass Value:\n    sys.exit(3)\n")
    with pytest.raises(EngineError, match=rf"cannot import {path}, line 3: calls sys.exit\(3\)"):
        load_engine_file(str(path))


def test_the_style_of_an_engine_is_read_from_its_class(tmp_path):
    closures = write(tmp_path, "class Value:\n    def f(self):\n        self._backward = None\n", "closures.py")
    tuples = write(tmp_path, "class Value:\n    def f(self):\n        self._local_grads = ()\n", "tuples.py")
    assert engine_style(import_learner_file(closures)[0].Value) == "closures"
    assert engine_style(import_learner_file(tuples)[0].Value) == "local gradients"


def test_a_file_that_only_defines_things_runs_whole(tmp_path):
    """Statements after the class, and constants computed by math, are part of a right engine."""
    path = write(tmp_path, "import math\nLN2 = math.log(2.0)\nclass Value:\n    def __add__(self, other):\n"
                           "        return LN2\nValue.__radd__ = Value.__add__\n")
    module, notes, skipped = import_learner_file(path)
    assert notes == [] and skipped == [] and module.Value.__radd__ is module.Value.__add__ and module.LN2 == math.log(2.0)


def test_operators_attached_by_a_helper_after_the_class_run(tmp_path):
    path = write(tmp_path, "class Value:\n    def __init__(self, data):\n        self.data = data\n"
                           "def attach(cls):\n    cls.__add__ = lambda self, other: Value(self.data + other.data)\n"
                           "attach(Value)\n")
    module, _, skipped = import_learner_file(path)
    assert skipped == [] and (module.Value(1.0) + module.Value(2.0)).data == 3.0


def test_a_module_of_a_package_loads_with_its_relative_imports(tmp_path):
    from helpers import REPO

    package = tmp_path / "mygrad"  # a learner's package: the engine comes from a neighbour module
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "value.py").write_text((REPO / "tests" / "engines" / "closures.py").read_text())
    (package / "engine.py").write_text("from .value import Value  # noqa: F401\n")
    module, notes, _ = import_learner_file(package / "engine.py")
    assert module.Value.__module__ == "mygrad.value" and notes == []
    import microgpt_scalar.fused  # the project's fused engine: a package module too

    loaded = load_engine_file(str(REPO / "microgpt_scalar" / "fused.py") + ":FusedValue")
    assert loaded.value_cls is microgpt_scalar.fused.FusedValue
