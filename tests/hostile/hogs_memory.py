"""backward takes memory without end, in 64 MB pieces it touches."""
import wrong_exp


class Value(wrong_exp.Value):
    __slots__ = ()

    def backward(self):
        hoard = []
        while True:
            hoard.append(bytearray(b"x" * (64 << 20)))
