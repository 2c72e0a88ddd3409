"""A class's rows as a table on the terminal, CSV and JSON for a gradebook, and one static
HTML page: the table, then each engine's report and gradient plot.

    print(table_text(rows))
    write_class_files(out_dir, rows, meta)    # class.csv, class.json, index.html, reports/*.txt
"""
from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from microgpt_scalar.checkpoint import write_atomically

COLUMNS = ("engine", "verdict", "cause", "worst_tensor", "seconds")  # the table's, in order
CSV_COLUMNS = ("engine", "verdict", "agrees", "exit_code", "cause", "missing", "worst_tensor", "worst_excess",
               "seconds", "cpu_seconds", "path")
CAUSE_WIDTH = 60


def cause_cell(row: dict) -> str:
    """The named cause, or the missing operations."""
    if row.get("missing"):
        return "missing " + ", ".join(row["missing"])
    return row.get("cause") or ""


def worst_cell(row: dict) -> str:
    if not row.get("worst_tensor"):
        return ""
    excess = row.get("worst_excess")
    return f"{row['worst_tensor']} ({excess:.2g}x tol)" if excess is not None else row["worst_tensor"]


def table_text(rows: list) -> str:
    """One line per engine: name, verdict, cause or missing operations, worst tensor, time."""
    cells = [("engine", "verdict", "cause / missing", "worst tensor", "time")]
    for row in rows:
        cause = cause_cell(row)
        if len(cause) > CAUSE_WIDTH:
            cause = cause[:CAUSE_WIDTH - 3] + "..."
        cells.append((row["engine"], row["verdict"], cause, worst_cell(row), f"{row['seconds']:.1f} s"))
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines) + "\n"


def counts_line(rows: list) -> str:
    counts: dict = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return f"{len(rows)} engines: " + ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items()))


def csv_text(rows: list) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "missing": " ".join(row.get("missing") or []), "cause": row.get("cause") or ""})
    return out.getvalue()


def json_rows(rows: list) -> list:
    return [{key: value for key, value in row.items() if key != "report"} for row in rows]


def write_class_files(out_dir: Path, rows: list, meta: dict) -> dict:
    """Write everything, each file atomically; returns {what: path}."""
    out_dir = Path(out_dir)
    (out_dir / "reports").mkdir(parents=True, exist_ok=True)
    for row in rows:
        write_atomically(out_dir / "reports" / f"{row['engine']}.txt", (row["report"] or "").encode("utf-8"))
    files = {"csv": out_dir / "class.csv", "json": out_dir / "class.json", "html": out_dir / "index.html"}
    write_atomically(files["csv"], csv_text(rows).encode("utf-8"))
    payload = {"format": "microgpt-class-report", "version": 1, **meta, "engines": json_rows(rows)}
    write_atomically(files["json"], (json.dumps(payload, indent=1) + "\n").encode("utf-8"))
    write_atomically(files["html"], html_page(rows, meta).encode("utf-8"))
    return files


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.AGREE { background: #e3f6e3; } td.DISAGREE, td.ERROR { background: #fbe3e3; }
td.MISSING, td.REFUSED { background: #fdf3d8; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 560px; border: 1px solid #ddd; }
"""


def html_page(rows: list, meta: dict) -> str:
    """The static page: no script, no request beyond the plots beside it."""
    e = html.escape
    head = "".join(f"<th>{e(title)}</th>" for title in ("engine", "verdict", "cause / missing", "worst tensor",
                                                           "time (s)", "CPU (s)"))
    body = []
    for row in rows:
        anchor = f"engine-{e(row['engine'])}"
        body.append(f'<tr><td><a href="#{anchor}">{e(row["engine"])}</a></td>'
                    f'<td class="{e(row["verdict"])}">{e(row["verdict"])}</td><td>{e(cause_cell(row))}</td>'
                    f"<td>{e(worst_cell(row))}</td><td>{row['seconds']:.1f}</td><td>{row['cpu_seconds']:.1f}</td></tr>")
    sections = []
    for row in rows:
        plot = f'<p><img src="{e(row["plot"])}" alt="gradients of {e(row["engine"])}, scalar against torch"></p>' \
            if row.get("plot") else ""
        sections.append(f'<section id="engine-{e(row["engine"])}"><h2>{e(row["engine"])}: {e(row["verdict"])}</h2>'
                        f"<p>{e(row['path'])}</p>{plot}<pre>{e(row['report'] or cause_cell(row))}</pre></section>")
    settings = ", ".join(f"{e(str(key))} {e(str(value))}" for key, value in meta.items())
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>microgpt engines of the class'
            f"</title><style>{STYLE}</style></head><body>\n<h1>microgpt engines of the class</h1>\n"
            f"<p>{e(counts_line(rows))}. {settings}</p>\n"
            f'<table id="class-table"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body) +
            "\n</tbody></table>\n" + "\n".join(sections) + "\n</body></html>\n")
