"""Loading a learner's file: what runs, what does not, and what is put back afterwards.

Oracle: the statements of hand-written files, and the interpreter state before loading.
"""
from __future__ import annotations

import ast
import math
import os
import sys

import pytest

from compare.engines import EngineError, definitions_only, engine_style, import_learner_file, load_engine_file


def write(tmp_path, text: str, name: str = "engine.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_only_imports_definitions_and_constants_run_from_a_file_without_a_main_guard():
    tree = ast.parse(
        '"""doc"""\nimport math\nn_embd = 16\nhead_dim = n_embd // 4\ndocs = open("input.txt").read()\n'
        "print('training')\nfor step in range(500):\n    pass\ndef f():\n    pass\nclass Value:\n    pass\n"
        "try:\n    import numpy\nexcept ImportError:\n    numpy = None\n"
        'if __name__ == "__main__":\n    f()\n')
    kept, dropped = definitions_only(tree)
    assert [type(node).__name__ for node in kept] == ["Expr", "Import", "Assign", "Assign", "FunctionDef", "ClassDef", "Try"]
    assert [node.lineno for node in dropped] == [5, 6, 7]  # the data, the print, the loop; not the guard


def test_a_file_with_a_main_guard_loads_whole_and_without_a_note(tmp_path):
    path = write(tmp_path, "class Value:\n    pass\n\nif __name__ == '__main__':\n    raise SystemExit('trained')\n")
    module, notes = import_learner_file(path)
    assert isinstance(module.Value, type) and notes == []


def test_a_file_that_runs_code_at_import_gets_one_note_with_the_advice(tmp_path):
    path = write(tmp_path, "import random\nrandom.seed(1)\nprint('training')\nclass Value:\n    pass\n")
    module, notes = import_learner_file(path)
    assert isinstance(module.Value, type)
    (note,) = notes
    assert f"{path} runs code at import (line 3 and on)" in note and "__main__" in note and "\n" not in note


def test_an_error_at_import_names_file_and_line(tmp_path):
    path = write(tmp_path, "import math\n\nscale = 1 / 0\n")
    with pytest.raises(EngineError, match=rf"^cannot import {path}, line 3: ZeroDivisionError: division by zero$"):
        import_learner_file(path)
    path = write(tmp_path, "class Value:\n    def f(self)\n        pass\n", "syntax.py")
    with pytest.raises(EngineError, match=rf"^cannot import {path}, line 2: SyntaxError"):
        import_learner_file(path)


def test_interpreter_state_is_put_back_and_printing_is_kept_out(tmp_path, capsys):
    (tmp_path / "helper.py").write_text(
        "import os, sys\nsys.setrecursionlimit(150)\nsys.argv.append('--x')\nSEEN = list(sys.argv)\n"
        "os.chdir('/')\nprint('hello')\n")
    path = write(tmp_path, "from helper import SEEN\nclass Value:\n    pass\n")
    before = (sys.getrecursionlimit(), list(sys.argv), list(sys.path), os.getcwd())
    module, notes = import_learner_file(path)
    assert (sys.getrecursionlimit(), list(sys.argv), list(sys.path), os.getcwd()) == before
    assert module.SEEN == [str(path), "--x"]  # it saw itself as the whole command line
    assert capsys.readouterr() == ("", "")
    assert notes == [f"{path} printed 1 line(s) while loading (not shown)"]


def test_sys_exit_at_import_is_a_refusal_not_an_exit(tmp_path):
    path = write(tmp_path, "import sys\nclass Value:\n    sys.exit(3)\n")
    with pytest.raises(EngineError, match=rf"cannot import {path}, line 3: SystemExit: 3"):
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
    module, notes = import_learner_file(path)
    assert notes == [] and module.Value.__radd__ is module.Value.__add__ and module.LN2 == math.log(2.0)


def test_a_training_script_keeps_harmless_statements_and_leaves_out_what_needs_its_data(tmp_path):
    path = write(tmp_path, "import math\ndocs = open('input.txt').read().split()\nvocab = len(docs)\n"
                           "size = vocab + 1\nLN2 = math.log(2.0)\nclass Value:\n    pass\n"
                           "Value.__radd__ = Value.__init__\nfor doc in docs:\n    pass\n")
    module, notes = import_learner_file(path)
    assert len(notes) == 1 and "line 2 and on" in notes[0]
    assert module.LN2 == math.log(2.0) and module.Value.__radd__ is module.Value.__init__
    assert not hasattr(module, "docs") and not hasattr(module, "size")  # left out with the data they need


def test_a_module_of_a_package_loads_with_its_relative_imports(tmp_path):
    from helpers import REPO

    package = tmp_path / "mygrad"  # a learner's package: the engine comes from a neighbour module
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "value.py").write_text((REPO / "tests" / "engines" / "closures.py").read_text())
    (package / "engine.py").write_text("from .value import Value  # noqa: F401\n")
    module, notes = import_learner_file(package / "engine.py")
    assert module.Value.__module__ == "mygrad.value" and notes == []
    import microgpt_scalar.fused  # the project's fused engine: a package module too

    loaded = load_engine_file(str(REPO / "microgpt_scalar" / "fused.py") + ":FusedValue")
    assert loaded.value_cls is microgpt_scalar.fused.FusedValue
