"""backward takes memory without end, 64 MB at a time (zeros the kernel has yet to hand out)."""
import wrong_exp


def backward(self):
    hoard = []
    while True:
        hoard.append(bytes(64 << 20))


wrong_exp.Value.backward = backward  # every node's class, not only the leaves'
Value = wrong_exp.Value
