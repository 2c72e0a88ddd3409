"""docs/bridge.md is generated where it shows code or output: quotes by symbol, runnable
snippets, command output. The tests regenerate every block and fail on any that is stale,
show that a stale or broken block is caught, and check the exercises' answers."""
from __future__ import annotations

import difflib

import re
import shutil
import subprocess
import sys

import pytest
from helpers import load_script, replace_once

EXERCISES = "docs/exercises"


@pytest.fixture(scope="module")
def bridge():
    return load_script("bridge_docs")


@pytest.fixture(scope="module")
def guide(repo_root):
    return (repo_root / "docs" / "bridge.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def shown_and_printed(bridge, guide, repo_root, guide_notebook_outputs):
    """spec -> (the body the page shows, the body made from what the notebook's cell printed) for
    every snippet and run of the guide: the notebook is run once per test session."""
    made = {}
    for origin, stdout, _ in guide_notebook_outputs:
        if origin.get("kind") == "snippet":
            made[origin["spec"]] = bridge.snippet_body_of(repo_root, origin["spec"], stdout)
        elif origin.get("kind") == "run":
            made[origin["spec"]] = bridge.run_body_of(bridge.parse_run(origin["spec"]), stdout)
    return {spec: (body, made.get(spec)) for kind, spec, body, _ in bridge.blocks(guide, ("snippet", "run"))}


@pytest.fixture
def source_copy(bridge, guide, repo_root, tmp_path):
    """A copy of every file the guide quotes, at the same relative paths under tmp_path."""
    for path in {bridge.parse_spec(spec).path for spec in bridge.quote_specs(guide)}:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo_root / path, tmp_path / path)
    return tmp_path


def edit(path, old, new):
    path.write_text(replace_once(path.read_text(), old, new))


# Quotes: by symbol, narrowed, trimmed, and stale or broken ones caught.

def test_every_quote_in_the_guide_matches_the_source_regenerated_in_memory(bridge, guide):
    assert bridge.render(guide, kinds=("quote",)) == guide, "docs/bridge.md is stale: run python scripts/bridge_docs.py"
    assert bridge.stale_quotes(guide) == []


def test_a_changed_quoted_function_makes_exactly_its_quote_stale(bridge, guide, source_copy):
    assert bridge.stale_quotes(guide, source_copy) == []
    edit(source_copy / "microgpt_scalar" / "model.py", "scale = (ms + 1e-5) ** -0.5", "scale = (ms + 1e-6) ** -0.5")
    assert bridge.stale_quotes(guide, source_copy) == ["microgpt_scalar/model.py:rmsnorm"]
    assert "(ms + 1e-6) ** -0.5" in bridge.render(guide, source_copy, kinds=("quote",))


def test_a_changed_line_inside_a_narrowed_quote_makes_it_stale(bridge, guide, source_copy):
    edit(source_copy / "microgpt_torch" / "optim.py", "    lr = learning_rate_at(step, config)\n",
         "    lr = learning_rate_at(step + 1, config)\n")
    assert bridge.stale_quotes(guide, source_copy) == ["microgpt_torch/optim.py:set_learning_rate nodoc"]


def test_a_line_outside_a_narrowed_quote_leaves_it_current(bridge, guide, source_copy):
    edit(source_copy / "microgpt_torch" / "optim.py", "Give every parameter group the learning rate",
         "Set every parameter group's learning rate to that")  # the docstring, which nodoc drops
    assert bridge.stale_quotes(guide, source_copy) == []


def test_quotes_follow_their_symbol_when_lines_move(bridge, guide, source_copy):
    model = source_copy / "microgpt_scalar" / "model.py"
    edit(model, "def rmsnorm(x):", "def moved_down():\n    return None\n\n\ndef rmsnorm(x):")
    assert bridge.stale_quotes(guide, source_copy) == []


def test_a_removed_symbol_is_an_error_naming_the_quote(bridge, guide, source_copy):
    edit(source_copy / "microgpt_scalar" / "model.py", "def rmsnorm(x):", "def rms_norm(x):")
    with pytest.raises(bridge.QuoteError, match="microgpt_scalar/model.py has no rmsnorm"):
        bridge.stale_quotes(guide, source_copy)
    stale, broken = bridge.stale_blocks(guide, source_copy, kinds=("quote",))
    assert stale == [] and len(broken) == 1
    line = guide[:guide.index("<!-- quote microgpt_scalar/model.py:rmsnorm -->")].count("\n") + 1
    assert broken[0].startswith(f"line {line}: quote 'microgpt_scalar/model.py:rmsnorm': "
                                "microgpt_scalar/model.py has no rmsnorm")


def test_every_missing_symbol_is_reported_at_once_and_nothing_is_written(repo_root, guide, tmp_path):
    """The rendering script lists each quote whose symbol is gone, exits non-zero, and leaves
    the guide as it was."""
    text = guide.replace("microgpt_scalar/model.py:rmsnorm -->", "microgpt_scalar/model.py:rms_norm -->", 1) \
        .replace("microgpt_torch/model.py:MLP -->", "microgpt_torch/model.py:Mlp -->", 1)
    broken_guide = tmp_path / "bridge.md"
    broken_guide.write_text(text)
    done = subprocess.run([sys.executable, str(repo_root / "scripts" / "bridge_docs.py"), "--guide", str(broken_guide)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    errors = done.stderr.splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
    assert "microgpt_scalar/model.py has no rms_norm" in errors[0]
    assert "microgpt_torch/model.py has no Mlp" in errors[1]
    assert broken_guide.read_text() == text


SAMPLE = '''"""A module."""


@staticmethod
def helper(a):
    """Doc
    string."""
    b = a + 1
    record(b)
    c = b * 2
    return c


class Box:
    def get(self):
        return 1
'''


def test_options_narrow_the_span_drop_lines_and_the_docstring(bridge, tmp_path):
    (tmp_path / "m.py").write_text(SAMPLE)

    def body(spec):
        return bridge.quote_body(tmp_path, bridge.parse_spec(spec)).split("```python\n")[1].removesuffix("\n```\n")

    assert body("m.py:helper").startswith("@staticmethod\ndef helper(a):\n    \"\"\"Doc")
    assert body("m.py:helper nodoc") == "@staticmethod\ndef helper(a):\n    b = a + 1\n    record(b)\n    c = b * 2\n    return c"
    assert body('m.py:helper from="b = " to="c = "') == "b = a + 1\nrecord(b)\nc = b * 2"
    assert body('m.py:helper from="b = " to="c = " drop="record("') == "b = a + 1\nc = b * 2"
    assert body('m.py:helper from="b = " drop="record(" drop="c = "') == "b = a + 1\nreturn c"
    assert body('m.py:helper from="return"') == "return c"
    assert body('m.py:helper from="return" drop="nowhere"') == "return c"
    assert body("m.py:Box.get") == "def get(self):\n    return 1"
    for spec, message in [('m.py:helper from="nowhere"', "no line of it contains"),
                          ('m.py:helper from="return" to="b = "', "from the start contains"),
                          ("m.py:Box.put", "has no Box.put"), ("m.py:helper lines=3", "unknown option"),
                          ("missing.py:helper", "no file missing.py"), ("m.py", "FILE:SYMBOL")]:
        with pytest.raises(bridge.QuoteError, match=message):
            bridge.quote_body(tmp_path, bridge.parse_spec(spec))


def test_check_flag_exits_1_on_a_stale_quote_and_writes_nothing(bridge, repo_root, guide, tmp_path):
    """On a guide of one quote (so that --check has nothing slow to run), made stale by an edit."""
    kind, spec, body, _ = next(b for b in bridge.blocks(guide, ("quote",)) if b[1] == "microgpt_scalar/model.py:rmsnorm")
    stale_guide = tmp_path / "bridge.md"
    wrong = f"<!-- {kind} {spec} -->\n{body.replace('scale = (ms + 1e-5) ** -0.5', 'scale = (ms + 1e-5) ** 0.5')}<!-- /{kind} -->\n"
    stale_guide.write_text(wrong)
    done = subprocess.run([sys.executable, str(repo_root / "scripts" / "bridge_docs.py"), "--check", "--guide",
                           str(stale_guide)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "stale: microgpt_scalar/model.py:rmsnorm" in done.stderr
    assert stale_guide.read_text() == wrong  # --check writes nothing
    assert not (tmp_path / "bridge.ipynb").exists()


# Snippets and runs: executed, and their output compared with the guide's.

def test_every_snippet_and_run_prints_in_the_notebook_what_the_guide_shows(shown_and_printed, guide_notebook_outputs):
    assert len(shown_and_printed) >= 15
    assert all(errors == [] for _, _, errors in guide_notebook_outputs), \
        [(origin, errors) for origin, _, errors in guide_notebook_outputs if errors]
    stale = [spec for spec, (shown, now) in shown_and_printed.items() if shown != now]
    differences = ["".join(difflib.unified_diff(shown_and_printed[spec][0].splitlines(True),
                                                shown_and_printed[spec][1].splitlines(True), "page", "notebook"))
                   for spec in stale]
    assert stale == [], f"docs/bridge.md shows other output than its notebook for {stale}: " \
                        f"run python scripts/bridge_docs.py\n" + "\n".join(differences)


def test_a_commands_progress_bar_in_the_notebook_is_left_out_and_its_lines_kept():
    """A `!command` cell runs on a terminal: lines end in "\\r\\n", and a progress bar, drawn
    there only, redraws after bare "\\r"s (as captured from such a cell). What the command
    printed stays, line for line; a printed line is never taken for a bar."""
    from tutorial.notebook import without_progress_bars

    captured = ("a\r\n\r  0%|          | 0/3\r 33%|###       | 1/3\r100%|##########| 3/3\r100%|##########| 3/3"
                "\r\n\r\nAGREE: one line\r\n")
    assert without_progress_bars(captured) == "a\n\nAGREE: one line\n"
    assert without_progress_bars("step 1 | loss 3.3\nstep 2 | loss 3.1\n") == "step 1 | loss 3.3\nstep 2 | loss 3.1\n"


def test_the_notebook_is_made_from_the_page(guide, repo_root):
    from tutorial.notebook import notebook_text

    assert (repo_root / "docs" / "bridge.ipynb").read_text() == notebook_text(guide), \
        "docs/bridge.ipynb is stale: run python scripts/bridge_docs.py"


def test_the_notebook_starts_in_the_repository_root_and_has_a_cell_per_snippet_and_run(bridge, guide,
                                                                                    guide_notebook_outputs):
    from tutorial.notebook import SETUP_OUTPUT

    origins = [origin for origin, _, _ in guide_notebook_outputs]
    assert origins[0] == {"kind": "setup", "spec": "setup"}
    assert guide_notebook_outputs[0][1].strip() == SETUP_OUTPUT
    assert [(o["kind"], o["spec"]) for o in origins[1:]] == [(kind, spec) for kind, spec, _, _ in
                                                              bridge.blocks(guide, ("snippet", "run"))]


def test_a_snippet_in_the_notebook_that_prints_otherwise_is_caught(bridge, repo_root):
    """The comparison above is not vacuous: a changed output no longer makes the page's block."""
    _, spec, body, _ = next(b for b in bridge.blocks((repo_root / "docs" / "bridge.md").read_text(), ("snippet",)))
    printed = body.split("```text\n", 1)[1].split("\n", 1)[1].removesuffix("\n```\n")
    assert bridge.snippet_body_of(repo_root, spec, printed + "\n") == body
    assert bridge.snippet_body_of(repo_root, spec, printed.replace("0", "1", 1)) != body


def test_the_page_teaches_the_day_two_idioms_each_with_a_runnable_cell(bridge, guide):
    snippet_code = "".join(body.split("```text")[0] for _, _, body, _ in bridge.blocks(guide, ("snippet",)))
    for idiom in ("DataLoader", "state_dict", "eval()", "no_grad"):
        assert guide.count(idiom) >= 3, idiom
        assert idiom in snippet_code, f"{idiom} is not in any snippet (a runnable cell)"


def test_every_snippet_and_exercise_file_is_in_the_guide(bridge, guide, repo_root):
    """Each snippet is run on the page; each exercise is named there, and its answer (if it has one)
    is the file of the same name under answers/, or is named itself."""
    snippets = {spec for kind, spec, _, _ in bridge.blocks(guide, ("snippet",))}
    assert snippets == {f"docs/snippets/{p.name}" for p in (repo_root / "docs" / "snippets").glob("*.py")}
    for path in (repo_root / EXERCISES).rglob("*.py"):
        relative = str(path.relative_to(repo_root))
        exercise = relative.replace("/answers/", "/")
        assert relative in guide or (exercise != relative and exercise in guide), relative


def _snippet_guide(bridge, root, code, shown_output):
    (root / "docs" / "snippets").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "snippets" / "hello.py").write_text(code)
    body = bridge.snippet_body(root, "docs/snippets/hello.py") if shown_output is None else (
        f"*`docs/snippets/hello.py`*\n\n```python\n{code.rstrip()}\n```\n\n"
        f"```text\n$ python -m docs.snippets.hello\n{shown_output}\n```\n")
    return f"intro\n<!-- snippet docs/snippets/hello.py -->\n{body}<!-- /snippet -->\noutro\n"


def test_a_snippet_whose_output_changed_is_stale(bridge, tmp_path):
    current = _snippet_guide(bridge, tmp_path, 'print("x.grad", 2 * 3.0)\n', "x.grad 6.0")
    assert bridge.stale_blocks(current, tmp_path) == ([], [])
    wrong = _snippet_guide(bridge, tmp_path, 'print("x.grad", 2 * 3.0)\n', "x.grad 3.0")
    assert bridge.stale_blocks(wrong, tmp_path) == (["docs/snippets/hello.py"], [])
    assert "x.grad 6.0" in bridge.render(wrong, tmp_path)


def test_a_failing_snippet_is_an_error_naming_it(bridge, tmp_path):
    text = _snippet_guide(bridge, tmp_path, 'print("fine")\n', "fine")
    (tmp_path / "docs" / "snippets" / "hello.py").write_text('raise RuntimeError("boom")\n')
    stale, broken = bridge.stale_blocks(text, tmp_path)
    assert stale == [] and len(broken) == 1
    assert "snippet 'docs/snippets/hello.py': exited 1: RuntimeError: boom" in broken[0]


def test_a_run_keeps_the_asked_stretch_and_its_exit_status_is_checked(bridge, tmp_path):
    (tmp_path / "five.py").write_text("import sys\nfor i in range(5):\n    print('line', i)\nsys.exit(1)\n")
    body = bridge.run_body(tmp_path, bridge.parse_run('python five.py | from="line 1" to="line 2" exit=1'))
    assert body == "```text\n$ python five.py\n...\nline 1\nline 2\n...\n```\n"
    with pytest.raises(bridge.QuoteError, match="exited 1, expected 0"):
        bridge.run_body(tmp_path, bridge.parse_run("python five.py"))
    for spec, message in [("python five.py | lines=3", "unknown option"), ("ls five.py", "must start with python"),
                          ("python five.py | exit=one", "takes a number"),
                          ('python five.py | from="nowhere" exit=1', "no line of it contains")]:
        with pytest.raises(bridge.QuoteError, match=message):
            bridge.run_body(tmp_path, bridge.parse_run(spec))


# The guide as a tutorial.

def test_the_first_screen_runs_the_checker_on_an_engine_and_an_injected_fault(guide):
    first_screen = "\n".join(guide.splitlines()[:20])
    for words in ("compare_step.py", "--engine", "--inject"):
        assert words in first_screen, words
    assert "<!-- run python scripts/compare_step.py --engine docs/exercises/engine.py" in guide
    assert "<!-- run python scripts/compare_step.py --inject grad-assign" in guide


def test_the_guide_pairs_scalar_and_torch_code_for_every_piece_in_forward_order(bridge, guide):
    """Whole functions and classes, as the files hold them, the scalar one first."""
    specs = bridge.quote_specs(guide)
    pieces = [
        ("rmsnorm", "microgpt_scalar/model.py:rmsnorm", "microgpt_torch/model.py:rmsnorm"),
        ("mlp", "microgpt_scalar/model.py:GPT.mlp", "microgpt_torch/model.py:MLP"),
        ("attention", "microgpt_scalar/model.py:GPT.attention", "microgpt_torch/model.py:Attention"),
        ("layer", "microgpt_scalar/model.py:GPT.block", "microgpt_torch/model.py:Block"),
        ("embedding to logits", "microgpt_scalar/model.py:GPT.forward", "microgpt_torch/model.py:GPT.forward"),
        ("cross-entropy", "microgpt_scalar/train.py:forward_loss", "microgpt_torch/model.py:cross_entropy"),
    ]
    seen = []
    for piece, scalar, torch_twin in pieces:
        assert scalar in specs and torch_twin in specs, piece
        assert specs.index(scalar) < specs.index(torch_twin), piece
        seen.append(specs.index(scalar))
    assert seen == sorted(seen), "the pieces are not in the guide's order"
    for scalar in ("microgpt_scalar/optim.py:Adam.step", "microgpt_scalar/optim.py:learning_rate_at",
                   "microgpt_scalar/train.py:sample"):
        assert scalar in specs, scalar
    model_quotes = [spec for spec in specs if spec.startswith(("microgpt_scalar/model.py", "microgpt_torch/model.py"))]
    assert all(" " not in spec for spec in model_quotes), "section 3 quotes whole functions, as the files hold them"


TORCH_MODEL_PIECES = {"rmsnorm", "MLP", "Attention", "Block", "GPT.forward", "GPT.loss", "cross_entropy",
                      "position_losses"}


def torch_model_quotes_unlike_the_file(bridge, guide: str) -> list[str]:
    """The quotes of microgpt_torch/model.py whose code is not the whole function or class as
    Python itself reads it from the file (inspect.getsource, not the guide's generator)."""
    import inspect
    import textwrap

    import microgpt_torch.model

    unlike = []
    for _, spec, body, _ in bridge.blocks(guide, ("quote",)):
        if not spec.startswith("microgpt_torch/model.py:"):
            continue
        piece = microgpt_torch.model
        for name in spec.split(":", 1)[1].split()[0].split("."):
            piece = getattr(piece, name)
        shown = body.split("```python\n", 1)[1].rsplit("\n```", 1)[0]
        if shown != textwrap.dedent(inspect.getsource(piece)).rstrip("\n"):
            unlike.append(spec)
    return unlike


def test_the_guide_quotes_every_piece_of_the_torch_model_whole(bridge, guide):
    quoted = {spec.split(":", 1)[1] for spec in bridge.quote_specs(guide) if spec.startswith("microgpt_torch/model.py:")}
    assert TORCH_MODEL_PIECES <= quoted, sorted(TORCH_MODEL_PIECES - quoted)
    assert torch_model_quotes_unlike_the_file(bridge, guide) == []
    # The check sees a quote with a line left out.
    trimmed = bridge.render(guide.replace("<!-- quote microgpt_torch/model.py:Attention -->",
                                          '<!-- quote microgpt_torch/model.py:Attention drop="causal" -->'),
                            kinds=("quote",))
    assert torch_model_quotes_unlike_the_file(bridge, trimmed) == ['microgpt_torch/model.py:Attention drop="causal"']


def test_the_guide_covers_the_autograd_vocabulary_in_snippets(bridge, guide):
    snippet_text = "".join(body for _, _, body, _ in bridge.blocks(guide, ("snippet",)))
    for term in ("requires_grad", ".grad", "zero_grad", "torch.no_grad", ".item()", ".detach()", "retain_graph",
                 "is_leaf", "retain_grad", "Trying to backward through the graph a second time",
                 "in-place operation", "float64", "IGNORE_INDEX", ".to("):
        assert term in snippet_text, term


def test_what_only_the_project_needs_is_told_in_the_last_section(guide):
    """Outside the quotes and snippets, the trainer's machinery (fused paths, CUDA graphs, DDP wrappers, loading the
    scalar weights) is explained once, in "How the project's trainer differs", and nowhere before it."""
    last = guide.index("## 8. How the project's trainer differs")
    before = re.sub(r"<!-- (quote|snippet) .*?<!-- /(quote|snippet) -->", "", guide[:last], flags=re.S)
    for detail in ("from_scalar_params", "CUDA graph", 'getattr(model, "module"', "DistributedDataParallel",
                   "set_learning_rate", "scaled_dot_product_attention"):
        assert detail not in before, detail
        assert detail in guide[last:], detail


def test_the_precision_table_is_in_the_guide_for_its_script(guide):
    precision_table = load_script("precision_table")
    assert precision_table.TABLE.search(guide)


def short(cell: str) -> str:
    """'1.8e-07' -> '1.8e-7', as the prose writes a number from the table."""
    mantissa, exponent = cell.split("e")
    return f"{mantissa}e{int(exponent)}"


def uncited_table_numbers(guide: str) -> list[str]:
    """The numbers of the table's CPU rows that the paragraph after it should cite and does not."""
    table = guide[guide.index("<!-- precision-table -->"):guide.index("<!-- /precision-table -->")]
    prose = guide[guide.index("<!-- /precision-table -->"):guide.index("## 6. Cheat sheet")]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                               for line in table.splitlines() if line.startswith("| CPU"))}
    float64, float32, bf16 = rows["CPU, float64"], rows["CPU, float32"], rows["CPU, float32 + bf16 autocast"]
    cited = [short(float64[1]), short(float64[2]), short(float32[0]), short(float32[2]), short(bf16[0]), short(bf16[2])]
    return [number for number in cited if number not in prose]


def test_the_precision_prose_quotes_the_numbers_of_the_table(guide):
    """Re-measured numbers that changed make this fail until the paragraph cites them."""
    assert uncited_table_numbers(guide) == []
    remeasured = guide.replace("| CPU, float32 | 1.8e-07 |", "| CPU, float32 | 1.9e-07 |", 1)
    assert uncited_table_numbers(remeasured) == ["1.9e-7"]


# Exercises: answers made from the starting engine by the one edit the exercise asks for.

def test_exercise_answers_are_the_starting_engine_with_one_edit(repo_root):
    engine = (repo_root / EXERCISES / "engine.py").read_text()
    code = engine[engine.index("import math"):]
    tanh = (repo_root / EXERCISES / "answers" / "engine_tanh.py").read_text()
    broken = (repo_root / EXERCISES / "answers" / "broken_exp.py").read_text()
    tanh_method = tanh[tanh.index("    def tanh(self):"):tanh.index("    def backward(self):")]
    assert "(1 - t**2)" in tanh_method
    assert tanh[tanh.index("import math"):] == replace_once(code, "    def backward(self):", tanh_method + "    def backward(self):")
    assert broken[broken.index("import math"):] == replace_once(code, "self.grad += out.data * out.grad",
                                                                "self.grad += self.data * out.grad")


def probe_status(report: str, op: str):
    """How the report's operator-probe table files `op`: "ok" (named on the ok line or the lines
    it wraps onto), "WRONG" or "NOT CHECKED" (a line of its own), or None when the table does
    not name it."""
    head = report.split("\n  loss ")[0]
    on_ok_line = False
    for line in head.splitlines():
        words = line.split()
        on_ok_line = bool(words) and (words[0] == "ok" or (on_ok_line and line.startswith(" " * 17)))
        if on_ok_line and op in words[1 if words[0] == "ok" else 0:]:
            return "ok"
        if len(words) > 1 and words[0] == "WRONG" and words[1].rstrip(":") == op:
            return "WRONG"
        if len(words) > 2 and words[:2] == ["NOT", "CHECKED"] and words[2].rstrip(":") == op:
            return "NOT CHECKED"
    return None


def test_the_tanh_answer_passes_its_probe(shown_and_printed):
    """The guide's run of the answer shows the top of the report."""
    _, report = shown_and_printed[f"python scripts/compare_step.py --engine {EXERCISES}/answers/engine_tanh.py | to=\"loss\""]
    assert probe_status(report, "tanh") == "ok"


def test_a_wrong_tanh_derivative_fails_its_probe(repo_root, tmp_path, capsys):
    """The checker's command in this process (the engine runs in a process of its own)."""
    answer = (repo_root / EXERCISES / "answers" / "engine_tanh.py").read_text()
    wrong = tmp_path / "engine_wrong_tanh.py"
    wrong.write_text(replace_once(answer, "(1 - t**2)", "(1 - t)"))
    capsys.readouterr()
    assert load_script("compare_step").main(["--engine", str(wrong)]) == 1
    assert probe_status(capsys.readouterr().out, "tanh") == "WRONG"


def test_the_readme_links_both_forms_and_states_the_time_the_page_measures(repo_root, guide):
    from tutorial.reading_time import measure

    readme = (repo_root / "README.md").read_text()
    assert "](docs/bridge.md)" in readme and "](docs/bridge.ipynb)" in readme
    measures = measure(guide)
    words = int(re.search(r"holds ([\d,]+) words of prose", readme)[1].replace(",", ""))
    code = int(re.search(r"([\d,]+) lines of code", readme)[1].replace(",", ""))
    assert abs(words - measures.prose_words) <= 0.1 * measures.prose_words, (words, measures)
    assert abs(code - measures.code_lines) <= 0.1 * measures.code_lines, (code, measures)
    hours = {"three and a half": 3.5, "three": 3, "four": 4, "four and a half": 4.5}
    stated = hours[re.search(r"about (\w+(?: and a half)?) hours", readme)[1]]
    assert abs(stated * 60 - measures.total_minutes()) <= 20, (stated, measures.total_minutes())
