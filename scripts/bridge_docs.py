"""Fill the code quotes of docs/bridge.md from the source, or check that they are current.

    python scripts/bridge_docs.py            # rewrite the quotes in docs/bridge.md
    python scripts/bridge_docs.py --check    # exit 1 if a quote no longer matches its source

A quote is addressed by file and symbol, not by line numbers, so it follows the code when
lines move; the span between its two markers is generated, the prose around it is not:

    <!-- quote microgpt_scalar/model.py:rmsnorm -->
    ...generated: a caption and a fenced code block...
    <!-- /quote -->

The symbol is a function, a class or `Class.method`. Options narrow the span or trim it:
`from="text"` starts at the first line of the symbol containing text, `to="text"` ends at
the first line from there containing text (inclusive), `nodoc` drops the docstring.
"""
from __future__ import annotations

import ast
import re
import shlex
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "bridge.md"
sys.path.insert(0, str(REPO))

from microgpt_scalar.cli import OneLineParser  # noqa: E402

QUOTE = re.compile(r"^<!-- quote (?P<spec>.+?) -->\n(?P<body>.*?)^<!-- /quote -->$", re.M | re.S)
OPTIONS = ("from", "to", "nodoc")


class QuoteError(ValueError):
    """A quote whose address or options do not lead to source lines; one line, naming it."""


@dataclass(frozen=True)
class Quote:
    spec: str  # the marker's text, as written
    path: str  # relative to the repository root
    symbol: str  # "function", "Class" or "Class.method"
    start: str | None = None  # first line: the first containing this text
    end: str | None = None  # last line: the first from the start containing this text
    nodoc: bool = False  # drop the docstring


def parse_spec(spec: str) -> Quote:
    """'path.py:Symbol from="a" to="b" nodoc' -> Quote."""
    try:
        words = shlex.split(spec)
    except ValueError as error:
        raise QuoteError(f"quote {spec!r}: {error}") from None
    address, options = words[0], {}
    for word in words[1:]:
        key, _, value = word.partition("=")
        if key not in OPTIONS or (key == "nodoc") == bool(_):
            raise QuoteError(f"quote {spec!r}: unknown option {word!r} (options: from=, to=, nodoc)")
        options[key] = value if _ else True
    path, _, symbol = address.partition(":")
    if not path or not symbol:
        raise QuoteError(f"quote {spec!r}: address must be FILE:SYMBOL")
    return Quote(spec, path, symbol, options.get("from"), options.get("to"), bool(options.get("nodoc")))


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
        raise QuoteError(f"quote {quote.spec!r}: {quote.path} has no {quote.symbol}")
    lines = text.splitlines()
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    span = list(range(first - 1, node.end_lineno))
    doc = node.body[0] if node.body else None
    if quote.nodoc and isinstance(doc, ast.Expr) and isinstance(getattr(doc, "value", None), ast.Constant) \
            and isinstance(doc.value.value, str):
        span = [i for i in span if not doc.lineno - 1 <= i < doc.end_lineno]
    return [lines[i] for i in span]


def narrow(lines: list[str], quote: Quote) -> list[str]:
    """The lines from the `from` text to the `to` text, inclusive."""
    start = 0
    if quote.start is not None:
        start = next((i for i, line in enumerate(lines) if quote.start in line), None)
        if start is None:
            raise QuoteError(f"quote {quote.spec!r}: no line of {quote.symbol} contains {quote.start!r}")
    end = len(lines) - 1
    if quote.end is not None:
        end = next((i for i in range(start, len(lines)) if quote.end in lines[i]), None)
        if end is None:
            raise QuoteError(f"quote {quote.spec!r}: no line of {quote.symbol} from the start contains {quote.end!r}")
    return lines[start:end + 1]


def quote_body(root: Path, quote: Quote) -> str:
    """What goes between the markers: a caption naming the source, then the code."""
    code = textwrap.dedent("\n".join(narrow(source_lines(root, quote), quote)))
    where = f"`{quote.path}`, `{quote.symbol}`"
    return f"*{where}*\n\n```python\n{code}\n```\n"


def render(text: str, root: Path = REPO) -> str:
    """`text` with every quote filled in from the source under `root`."""
    def fill(match: re.Match) -> str:
        quote = parse_spec(match["spec"])
        return f"<!-- quote {match['spec']} -->\n{quote_body(root, quote)}<!-- /quote -->"

    return QUOTE.sub(fill, text)


def stale_quotes(text: str, root: Path = REPO) -> list[str]:
    """The specs of the quotes in `text` that differ from what the source gives now."""
    stale = []
    for match in QUOTE.finditer(text):
        if match["body"] != quote_body(root, parse_spec(match["spec"])):
            stale.append(match["spec"])
    return stale


def quote_specs(text: str) -> list[str]:
    return [match["spec"] for match in QUOTE.finditer(text)]


def main(argv=None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the guide is stale; write nothing")
    parser.add_argument("--guide", default=str(GUIDE), help="the guide to fill or check")
    args = parser.parse_args(argv)
    guide = Path(args.guide)
    if not guide.is_file():
        print(f"error: no guide at {guide}", file=sys.stderr)
        return 2
    text = guide.read_text(encoding="utf-8")
    try:
        if args.check:
            stale = stale_quotes(text)
            for spec in stale:
                print(f"stale quote: {spec}", file=sys.stderr)
            if stale:
                print(f"{guide} is stale: run python scripts/bridge_docs.py", file=sys.stderr)
            return 1 if stale else 0
        new = render(text)
    except QuoteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if new != text:
        guide.write_text(new, encoding="utf-8")
    print(f"{guide}: {len(quote_specs(new))} quotes, {'updated' if new != text else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
