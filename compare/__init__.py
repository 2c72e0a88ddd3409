"""Check a scalar autograd engine against torch, one training step at a time.

    from compare import compare_step
    report = compare_step()          # raises on bad input, never prints
    report.agrees                    # scripts/compare_step.py prints compare.render.render(report)

Importing the package is cheap: torch is imported with the module that uses it (the check
itself), so `compare.certify`, which needs none, never pays for it.
"""
import importlib

_EXPORTS = {
    "compare_step": "check", "DeviceError": "check", "EngineFailure": "check",
    "EngineError": "engines", "load_engine": "engines",
    "FAULTS": "faults", "faulty_engine": "faults",
    "Report": "report", "load_report": "report", "save_report": "report",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'compare' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
