"""Second: the training step, taken by both engines from the same weights on the same documents.

    weights.py     where the step starts: parameters, Adam state, step count
    documents.py   what it trains on, and which documents each step takes
    scalar.py      the scalar side: the training scripts' own step, no torch
    torch_side.py  the torch side: the same step on the fused model
    trace.py       the named intermediates of both forward passes
"""
