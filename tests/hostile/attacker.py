"""The wrong engine (wrong_exp.py) with an attack on the checker built in:

    Value = attacking(_attack)

runs `_attack()` at the first backward, in the probes, once the file has loaded; with
HOSTILE_AT=import in the environment, at once, while the file loads (a statement at the top
of a file runs at import, even in a file with no main guard)."""
import os

import wrong_exp


def attacking(attack):
    if os.environ.get("HOSTILE_AT") == "import":
        attack()

    class Value(wrong_exp.Value):
        __slots__ = ()

        def backward(self):
            attack()
            super().backward()

    return Value
