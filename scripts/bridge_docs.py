"""Fill the generated parts of docs/bridge.md (code quotes, snippets, command output), or check them.

    python scripts/bridge_docs.py            # rewrite the generated parts of docs/bridge.md, and docs/bridge.ipynb
    python scripts/bridge_docs.py --check    # exit 1 if one no longer matches what it is made from

The guide's prose is written by hand; three kinds of block between markers are generated, so
what the guide shows is what the repository holds and prints:

    <!-- quote microgpt_scalar/model.py:rmsnorm -->          code quoted from the source by symbol
    <!-- snippet docs/snippets/first_gradient.py -->         a whole runnable file, then what it prints
    <!-- run python scripts/compare_step.py | to="loss" -->  a command, then what it prints
    ...generated...
    <!-- /quote -->  (or /snippet, /run)

A quote names a function, a class or `Class.method`, not line numbers, so it follows the code
when lines move. Its options: `from="text"` starts at the first line of the symbol containing
text, `to="text"` ends at the first line from there containing text (inclusive), `nodoc` drops
the docstring, `drop="text"` drops every line containing text (repeatable; a text no line
contains drops nothing, so a quote outlives the lines it trims).

A snippet is run as `python -m` of its dotted path (`docs.snippets.NAME`) from the repository
root, as a reader runs it. A run's options follow a `|`: `from=` and `to=` keep a stretch of
the output, `exit=N` is the exit status the command must end with (default 0). Snippets and
runs that end otherwise are errors.

The notebook docs/bridge.ipynb is made from the page (tutorial/notebook.py): the snippets and runs
become its code cells, the rest Markdown.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this clone's packages first

if __name__ == "__main__":  # Ctrl-C while the modules load: one line and exit 130, not a traceback
    from microgpt_scalar.startup import quiet_while_starting

    quiet_while_starting()

import ast
import re
import shlex
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "bridge.md"

from microgpt_scalar.cli import OneLineParser, command, print_error  # noqa: E402
from microgpt_scalar.files import FileError, check_input, read_input, write_atomically  # noqa: E402
from tutorial.notebook import notebook_text  # noqa: E402

BLOCK = re.compile(r"^<!-- (?P<kind>quote|snippet|run) (?P<spec>.+?) -->\n(?P<body>.*?)^<!-- /(?P=kind) -->$",
                   re.M | re.S)
QUOTE_OPTIONS = ("from", "to", "nodoc", "drop")
RUN_OPTIONS = ("from", "to", "exit")
RUN_TIMEOUT_S = 600  # a compare_step run takes seconds; this only stops a hung command


class QuoteError(ValueError):
    """A block whose address, options or command do not lead to what it shows; one line, naming it."""


@dataclass(frozen=True)
class Quote:
    spec: str  # the marker's text, as written
    path: str  # relative to the repository root
    symbol: str  # "function", "Class" or "Class.method"
    start: str | None = None  # first line: the first containing this text
    end: str | None = None  # last line: the first from the start containing this text
    nodoc: bool = False  # drop the docstring
    drop: tuple[str, ...] = ()  # drop every line containing one of these


@dataclass(frozen=True)
class Run:
    spec: str  # the marker's text, as written
    command: str  # as the reader types it, from the repository root
    start: str | None = None  # keep the output from the first line containing this text
    end: str | None = None  # ... to the first line from there containing this text
    exit: int = 0  # the exit status the command must end with


def parse_options(spec: str, words: list[str], allowed: tuple[str, ...]) -> dict:
    """key="value" words (and the bare flag nodoc) -> {key: value}; drop= may repeat."""
    options: dict = {}
    for word in words:
        key, has_value, value = word.partition("=")
        if key not in allowed or (key == "nodoc") == bool(has_value):
            raise QuoteError(f"{spec!r}: unknown option {word!r} (options: {', '.join(allowed)})")
        if key == "drop":
            options[key] = options.get(key, ()) + (value,)
        else:
            options[key] = value if has_value else True
    return options


def parse_spec(spec: str) -> Quote:
    """'path.py:Symbol from="a" to="b" nodoc drop="c"' -> Quote."""
    try:
        words = shlex.split(spec)
    except ValueError as error:
        raise QuoteError(f"quote {spec!r}: {error}") from None
    options = parse_options(f"quote {spec}", words[1:], QUOTE_OPTIONS)
    path, _, symbol = words[0].partition(":")
    if not path or not symbol:
        raise QuoteError(f"quote {spec!r}: address must be FILE:SYMBOL")
    return Quote(spec, path, symbol, options.get("from"), options.get("to"), bool(options.get("nodoc")),
                 options.get("drop", ()))


def parse_run(spec: str) -> Run:
    """'python scripts/x.py --flag | from="a" exit=1' -> Run."""
    command, _, option_text = spec.partition(" | ")
    try:
        options = parse_options(f"run {spec}", shlex.split(option_text), RUN_OPTIONS)
        shlex.split(command)
    except ValueError as error:
        raise QuoteError(f"run {spec!r}: {error}") from None
    if not command.startswith("python "):
        raise QuoteError(f"run {spec!r}: the command must start with python")
    exit_status = options.get("exit", "0")
    if not str(exit_status).isdigit():
        raise QuoteError(f"run {spec!r}: exit= takes a number, got {exit_status!r}")
    return Run(spec, command.strip(), options.get("from"), options.get("to"), int(exit_status))


def find_symbol(tree: ast.Module, symbol: str):
    """The def or class node named by 'a' or 'A.b' at the top of `tree`."""
    scope = tree.body
    node = None
    for part in symbol.split("."):
        matches = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                   and n.name == part]
        if not matches:
            return None
        node = matches[-1]  # like Python: the last definition of a name wins
        scope = node.body
    return node


def source_lines(root: Path, quote: Quote) -> list[str]:
    """The symbol's lines (with decorators), docstring dropped if asked, not yet narrowed."""
    path = root / quote.path
    if not path.is_file():
        raise QuoteError(f"quote {quote.spec!r}: no file {quote.path}")
    text = path.read_text(encoding="utf-8")
    node = find_symbol(ast.parse(text, filename=str(path)), quote.symbol)
    if node is None:
        raise QuoteError(f"quote {quote.spec!r}: {quote.path} has no {quote.symbol} "
                         f"(point the quote at the symbol that holds these lines now)")
    lines = text.splitlines()
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    span = list(range(first - 1, node.end_lineno))
    doc = node.body[0] if node.body else None
    if quote.nodoc and isinstance(doc, ast.Expr) and isinstance(getattr(doc, "value", None), ast.Constant) \
            and isinstance(doc.value.value, str):
        span = [i for i in span if not doc.lineno - 1 <= i < doc.end_lineno]
    return [lines[i] for i in span]


def narrow(lines: list[str], start_text: str | None, end_text: str | None, what: str) -> tuple[int, int]:
    """(first, last) indices: from the first line containing start_text to the first line from
    there containing end_text, inclusive; the whole list when neither is given."""
    start = 0
    if start_text is not None:
        start = next((i for i, line in enumerate(lines) if start_text in line), None)
        if start is None:
            raise QuoteError(f"{what}: no line of it contains {start_text!r}")
    end = len(lines) - 1
    if end_text is not None:
        end = next((i for i in range(start, len(lines)) if end_text in lines[i]), None)
        if end is None:
            raise QuoteError(f"{what}: no line of it from the start contains {end_text!r}")
    return start, end


def quote_body(root: Path, quote: Quote) -> str:
    """What goes between the markers: a caption naming the source, then the code."""
    lines = source_lines(root, quote)
    start, end = narrow(lines, quote.start, quote.end, f"quote {quote.spec!r} ({quote.symbol})")
    kept = [line for line in lines[start:end + 1] if not any(text in line for text in quote.drop)]
    code = textwrap.dedent("\n".join(kept))
    where = f"`{quote.path}`, `{quote.symbol}`"
    return f"*{where}*\n\n```python\n{code}\n```\n"


def snippet_module(path: str) -> str:
    """'docs/snippets/first_gradient.py' -> 'docs.snippets.first_gradient'."""
    return path.removesuffix(".py").replace("/", ".")


def snippet_body(root: Path, path: str) -> str:
    """The snippet's code, then the command that runs it and what it prints."""
    file = root / path
    if not path.endswith(".py") or not file.is_file():
        raise QuoteError(f"snippet {path!r}: no file {path}")
    status, out, err = _run(root, snippet_command(path), f"snippet {path!r}")
    if status != 0:
        raise QuoteError(f"snippet {path!r}: exited {status}: {last_line(err)}")
    return snippet_body_of(root, path, out)


def snippet_command(path: str) -> str:
    return f"python -m {snippet_module(path)}"


def snippet_body_of(root: Path, path: str, out: str) -> str:
    """The block of snippet `path` that prints `out`: its code, the command and the output."""
    code = (root / path).read_text(encoding="utf-8").rstrip("\n")
    return f"*`{path}`*\n\n```python\n{code}\n```\n\n```text\n$ {snippet_command(path)}\n{out.rstrip()}\n```\n"


def run_body(root: Path, run: Run) -> str:
    """The command and the stretch of its output the marker asks for."""
    status, out, err = _run(root, run.command, f"run {run.spec!r}")
    if status != run.exit:
        raise QuoteError(f"run {run.spec!r}: exited {status}, expected {run.exit}: {last_line(err)}")
    return run_body_of(run, out)


def run_body_of(run: Run, out: str) -> str:
    """The block of `run` when the command prints `out`."""
    # the sandbox line says what this machine allows the checker; the guide shows what every machine prints
    lines = [line for line in out.rstrip().splitlines() if not line.startswith("  sandbox  ")]
    start, end = narrow(lines, run.start, run.end, f"run {run.spec!r} (its output)")
    shown = (["..."] if start > 0 else []) + lines[start:end + 1] + (["..."] if end < len(lines) - 1 else [])
    return "```text\n$ " + run.command + "\n" + "\n".join(shown) + "\n```\n"


def _run(root: Path, command: str, what: str) -> tuple[int, str, str]:
    argv = [sys.executable, *shlex.split(command)[1:]]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("PYTHONPATH", None)  # as a reader runs it: from the repository root, nothing else on the path
    try:
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise QuoteError(f"{what}: still running after {RUN_TIMEOUT_S} s") from None
    return done.returncode, done.stdout, done.stderr


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing on stderr)"


def block_body(root: Path, kind: str, spec: str) -> str:
    if kind == "quote":
        return quote_body(root, parse_spec(spec))
    if kind == "snippet":
        return snippet_body(root, spec.strip())
    return run_body(root, parse_run(spec))


def blocks(text: str, kinds=("quote", "snippet", "run")) -> list[tuple[str, str, str, int]]:
    """(kind, spec, body, line number) of every generated block of `text`, in order."""
    return [(m["kind"], m["spec"], m["body"], text.count("\n", 0, m.start()) + 1)
            for m in BLOCK.finditer(text) if m["kind"] in kinds]


def render(text: str, root: Path = REPO, kinds=("quote", "snippet", "run")) -> str:
    """`text` with every block of `kinds` filled in from the files and commands under `root`."""
    def fill(match: re.Match) -> str:
        if match["kind"] not in kinds:
            return match[0]
        return f"<!-- {match['kind']} {match['spec']} -->\n{block_body(root, match['kind'], match['spec'])}" \
               f"<!-- /{match['kind']} -->"

    return BLOCK.sub(fill, text)


def stale_blocks(text: str, root: Path = REPO, kinds=("quote", "snippet", "run")) -> tuple[list[str], list[str]]:
    """(stale, broken): the specs of blocks that differ from what they are made from now, and one
    message per block that cannot be made at all (a missing symbol, a failing command)."""
    stale, broken = [], []
    for kind, spec, body, line in blocks(text, kinds):
        try:
            if body != block_body(root, kind, spec):
                stale.append(spec)
        except QuoteError as error:
            broken.append(f"line {line}: {error}")
    return stale, broken


def stale_quotes(text: str, root: Path = REPO) -> list[str]:
    """The specs of the quotes in `text` that differ from what the source gives now; raises
    QuoteError for the first quote whose symbol or lines are gone."""
    return [spec for kind, spec, body, _ in blocks(text, ("quote",)) if body != block_body(root, kind, spec)]


def quote_specs(text: str) -> list[str]:
    return [spec for _, spec, _, _ in blocks(text, ("quote",))]


@command
def main(argv=None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the guide is stale; write nothing")
    parser.add_argument("--guide", default=str(GUIDE), help="the guide to fill or check")
    args = parser.parse_args(argv)
    try:
        guide = check_input(args.guide, "guide")
        text = read_input(guide, "guide").decode("utf-8")
    except UnicodeDecodeError:
        print_error(f"the guide {args.guide} is not UTF-8 text")
        return 2
    except FileError as error:
        print_error(error)
        return 2
    if args.check:
        stale, broken = stale_blocks(text)
        for message in broken:
            print_error(f"{guide}: {message}")
        for spec in stale:
            print(f"stale: {spec}", file=sys.stderr)
        notebook = notebook_path(guide)
        if not broken and (not notebook.is_file() or notebook.read_text(encoding="utf-8") != notebook_text(text)):
            stale.append(str(notebook))
        if stale:
            print(f"{guide} is stale: run python scripts/bridge_docs.py", file=sys.stderr)
        return 1 if stale or broken else 0
    _, broken = stale_blocks(text, kinds=("quote",))  # every missing symbol at once, before running anything
    if broken:
        for message in broken:
            print_error(f"{guide}: {message}")
        return 1
    try:
        new = render(text)
    except QuoteError as error:
        print_error(f"{guide}: {error}")
        return 1
    try:
        notebook = notebook_text(new)
    except ValueError as error:
        print_error(f"{guide}: {error}")
        return 1
    try:
        write_whole(guide, new, "--guide")
        write_whole(notebook_path(guide), notebook, "the guide's notebook")
    except FileError as error:
        print_error(error)
        return 2
    counts = {kind: len(blocks(new, (kind,))) for kind in ("quote", "snippet", "run")}
    print(f"{guide}: {counts['quote']} quotes, {counts['snippet']} snippets, {counts['run']} runs, "
          f"{'updated' if new != text else 'already current'}; its notebook {notebook_path(guide)}")
    return 0


def notebook_path(guide: Path) -> Path:
    """docs/bridge.md -> docs/bridge.ipynb, the guide's notebook form."""
    return guide.with_suffix(".ipynb")


def write_whole(path: Path, text: str, what: str) -> None:
    """All or nothing, through the project's one writer: the old file stays whole until the new
    one is; a file that already holds `text` is left as it is."""
    if path.is_file() and read_input(path, what) == text.encode("utf-8"):
        return
    write_atomically(path, text.encode("utf-8"), what)


if __name__ == "__main__":
    sys.exit(main())
