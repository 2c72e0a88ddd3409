"""One module of a package: the engine comes from its neighbour, by a relative import."""
from .value import Value  # noqa: F401
