"""selfsup: reproducible self-supervised learning experiments on images."""

__version__ = "0.1.0"
