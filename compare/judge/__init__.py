"""Third: the verdicts, each number of the engine under test against its witness.

    tolerances.py   every limit of closeness, with the measurement it came from
    diff.py         two lists of numbers compared: the worst differences and where
    step.py         a step: loss, gradients, parameters, Adam moments, where the forwards part
    probe_check.py  each probe against torch
    fd.py           each finite difference against the engine's own gradient
    diagnosis.py    the likeliest cause, and the line of the engine's code to look at
    suspects.py     which operations to suspect where the engines part
"""
