"""Check a scalar autograd engine against torch, one training step at a time.

    from compare import compare_step
    report = compare_step()          # raises on bad input, never prints
    report.agrees                    # scripts/compare_step.py prints compare.report.render.render(report)

Importing the package is cheap: the names below load when first used, so torch is imported
with the module that uses it (the check itself), and the engine's own process
(compare.engine.worker) and `compare.certify` never pay for it.
"""
from importlib import import_module

from microgpt_scalar import __version__  # noqa: F401  (one version for the whole distribution)

_WHERE = {
    "compare_step": "check", "DeviceError": "check", "EngineFailure": "engine.process",
    "EngineRefused": "engine.process", "EngineError": "engine.loader", "load_engine": "engine.loader",
    "FAULTS": "engine.faults", "faulty_engine": "engine.faults",
    "Report": "report.report", "load_report": "report.saved", "save_report": "report.saved",
}

__all__ = list(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'compare' has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
