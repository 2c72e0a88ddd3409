"""Last: what a check found, for a person, a script or a class.

    report.py        the Report: what was asked, and every verdict
    saved.py         the report as a JSON file, of any version
    summary.py       the report in a few lines of data
    render.py        the report as one screen of text
    plot.py          the gradients of both engines, one against the other
    class_report.py  a class's rows: a table, CSV, JSON and one HTML page
"""
