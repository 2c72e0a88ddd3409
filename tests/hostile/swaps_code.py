"""At its first backward (with HOSTILE_AT=import, at import), swaps the code object of the
checker's compare.engine.probes._run_one for one that probes the project's engine instead: every probe
would pass, the model step aside."""
import types

import compare.engine.probes as probes
import microgpt_scalar.engine

from attacker import attacking


def _attack():
    probes._honest_run_one = types.FunctionType(probes._run_one.__code__, vars(probes), "_honest_run_one")
    probes._project_value = microgpt_scalar.engine.Value

    def _run_one(value_cls, probe):
        return _honest_run_one(_project_value, probe)  # noqa: F821 (names of compare.engine.probes, once swapped in)

    probes._run_one.__code__ = _run_one.__code__


Value = attacking(_attack)
