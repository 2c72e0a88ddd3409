"""The guide's second form: docs/bridge.ipynb, made from docs/bridge.md with jupytext, and run with nbclient.

The page is the one source. Its prose and its quotes of the repository's code become Markdown
cells; each snippet becomes a code cell holding the snippet's file, and each command the page
runs becomes a `!python ...` cell. A first cell moves the kernel to the repository root, so the
notebook runs from wherever Jupyter opened it. Every code cell carries the page block it came
from in its metadata (`bridge`: kind and spec), so a test can set each cell's output beside what
the page shows.
"""
from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"^<!-- (?P<kind>quote|snippet|run) (?P<spec>.+?) -->\n(?P<body>.*?)^<!-- /(?P=kind) -->$\n?",
                   re.M | re.S)
SNIPPET_CODE = re.compile(r"```python\n(?P<code>.*?)\n```\n", re.S)

SETUP = '''import os, sys
from pathlib import Path

root = Path.cwd()  # run from the repository root, wherever Jupyter started
while not (root / "microgpt_scalar").is_dir() and root != root.parent:
    root = root.parent
os.chdir(root)
sys.path.insert(0, str(root))
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]  # !python is this kernel's
print("working in the repository root:", (root / "microgpt_scalar").is_dir())'''

SETUP_OUTPUT = "working in the repository root: True"
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def jupytext_source(page: str) -> tuple[str, list[dict]]:
    """(the page as jupytext Markdown, the origin of each code cell in order). Only snippets and
    runs become ```python fences; quotes stay Markdown (```py, which jupytext leaves as text)."""
    origins: list[dict] = []

    def cell(match: re.Match) -> str:
        kind, spec, body = match["kind"], match["spec"], match["body"]
        if kind == "quote":
            return body.replace("```python\n", "```py\n")
        if kind == "snippet":
            caption = body.split("\n", 1)[0]
            code = SNIPPET_CODE.search(body)["code"]
            origins.append({"kind": kind, "spec": spec})
            return f"{caption}\n\n```python\n{code}\n```\n"
        origins.append({"kind": kind, "spec": spec})
        command = spec.partition(" | ")[0].strip()
        return f"```python\n!{command}\n```\n"

    text = BLOCK.sub(cell, page)
    outside = text.count("```python\n") - len(origins)
    if outside:
        raise ValueError(f"the page has {outside} ```python block(s) outside snippet and run markers: "
                         "mark them, or fence them as another language")
    return text, origins


def make_notebook(page: str):
    """The notebook of the page: deterministic, unexecuted."""
    import jupytext
    import nbformat

    text, origins = jupytext_source(page)
    notebook = jupytext.reads(text, fmt="md")
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    if len(code_cells) != len(origins):
        raise ValueError(f"{len(code_cells)} code cells for {len(origins)} snippets and runs")
    for code, origin in zip(code_cells, origins):
        code.metadata = {"bridge": origin}
    setup = nbformat.v4.new_code_cell(SETUP, metadata={"bridge": {"kind": "setup", "spec": "setup"}})
    notebook.cells.insert(1, setup)
    for number, one in enumerate(notebook.cells):
        one.id = f"cell-{number}"
        if one.cell_type == "code":
            one.execution_count, one.outputs = None, []
    notebook.metadata = {"kernelspec": KERNEL, "language_info": {"name": "python"}}
    nbformat.validate(notebook)
    return notebook


def notebook_text(page: str) -> str:
    import nbformat

    return nbformat.writes(make_notebook(page)) + "\n"


def execute(notebook, root: Path, timeout: int = 600):
    """Run every cell in order in a fresh kernel started in `root`; returns the notebook with outputs.
    A cell that raises stops the run with nbclient's CellExecutionError naming it."""
    from nbclient import NotebookClient

    client = NotebookClient(notebook, timeout=timeout, kernel_name=KERNEL["name"],
                            resources={"metadata": {"path": str(root)}})
    return client.execute()


def without_progress_bars(text: str) -> str:
    """What a command printed, without what a progress bar drew. A `!command` cell runs the
    command on a terminal, so its output ends lines with "\r\n" and a bar (tqdm, drawn only
    on a terminal) redraws itself after a bare "\r"; the page shows the command's output as
    a program reads it, where no bar is drawn."""
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line for line in lines if "\r" not in line)


def cell_outputs(notebook) -> list[tuple[dict, str, list[str]]]:
    """(origin, what the cell printed on stdout, the names of its errors) of every code cell."""
    found = []
    for one in notebook.cells:
        if one.cell_type != "code":
            continue
        stdout = without_progress_bars("".join(o.get("text", "") for o in one.outputs
                                               if o.output_type == "stream" and o.name == "stdout"))
        errors = [o.get("ename", "?") for o in one.outputs if o.output_type == "error"]
        found.append((dict(one.metadata.get("bridge", {})), stdout, errors))
    return found
