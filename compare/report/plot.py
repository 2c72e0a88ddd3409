"""A scatter plot of the scalar engine's gradients against torch's, one colour per tensor.

Agreeing engines put every point on the diagonal; a wrong gradient leaves it. matplotlib is
an optional extra (`pip install -e .[plot]`).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

from microgpt_scalar.checkpoint import write_atomically

from .report import Report


class PlotUnavailable(ValueError):
    """matplotlib is not installed; the message is one line."""


def require_matplotlib(path=None) -> None:
    """Raise PlotUnavailable unless matplotlib is installed and can write `path`'s format."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib, which is not installed: "
                              "pip install matplotlib (or pip install -e .[plot])") from None
    if path is not None:
        formats = FigureCanvasBase.get_supported_filetypes()
        if plot_format(path) not in formats:
            raise PlotUnavailable(f"--plot {path}: cannot write a {plot_format(path)!r} file; "
                                  f"name a file ending in one of .{', .'.join(sorted(formats))}")


def plot_format(path) -> str:
    return Path(path).suffix.lstrip(".").lower() or "png"


def plot_gradients(report: Report, path) -> None:
    """Write the scatter plot to `path` (the format follows its suffix: .png, .svg, .pdf),
    atomically: a failed write leaves any earlier file whole."""
    require_matplotlib(path)
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator

    figure, axes = plt.subplots(figsize=(7, 7))
    for name, values in report.gradient_values.items():
        axes.scatter(values["scalar"], values["torch"], s=6, alpha=0.7, label=name)
    everything = [g for values in report.gradient_values.values() for g in values["scalar"] + values["torch"]]
    low, high = min(everything), max(everything)
    axes.plot([low, high], [low, high], color="black", linewidth=0.5, label="agreement")
    linear_near_zero = max(min((abs(g) for g in everything if g), default=1e-12), 1e-12)
    # A tick every 3 decades down to 1000x the linear band, and 0: a tick at the band's own edge
    # would print on top of the 0 label.
    decades = range(0, math.floor(math.log10(linear_near_zero)) + 2, -3)
    ticks = [0.0] + [sign * 10.0**k for k in decades for sign in (1, -1)]
    for axis, scale in ((axes.xaxis, axes.set_xscale), (axes.yaxis, axes.set_yscale)):
        scale("symlog", linthresh=linear_near_zero)  # gradients span many orders of magnitude, both signs
        axis.set_major_locator(FixedLocator(ticks))
    axes.set_xlabel(f"scalar engine gradient ({report.settings.engine})")
    axes.set_ylabel(f"torch gradient ({report.settings.dtype})")
    verdict = "they agree" if report.agrees else "they DISAGREE"
    axes.set_title(f"gradients of step {report.focus_step + 1}: {verdict}")
    axes.legend(fontsize="small", markerscale=2)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format=plot_format(path), dpi=120)
    plt.close(figure)
    write_atomically(path, image.getvalue())
