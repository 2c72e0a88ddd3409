"""The microgpt model as a PyTorch nn.Module, its training and sampling."""

from microgpt_scalar import __version__  # noqa: F401  (one version for the whole distribution)
