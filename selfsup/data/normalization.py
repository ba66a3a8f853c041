"""Input normalization: statistics of the training images, applied to every batch.

Computed once per split from the training images only (never test images), stored in
the split file, and applied by selfsup.inputs in pretext and downstream jobs alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("none", "per_pixel_mean", "per_channel")
CHUNK = 4096  # images per step when summing, so a large set is never whole in float


@dataclass
class Normalization:
    """x -> (x - mean) / std on pixels scaled to [0, 1]; mean and std broadcast over (H, W, C)."""

    kind: str = "none"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def __post_init__(self):
        if self.mean is None:
            self.mean = np.zeros(1, np.float32)
        if self.std is None:
            self.std = np.ones(1, np.float32)
        self.mean = np.asarray(self.mean, np.float32)
        self.std = np.asarray(self.std, np.float32)

    def apply(self, images):
        """Normalize a float batch in [0, 1] (a NumPy array or a tensor)."""
        if self.kind == "none":
            return images
        return (images - self.mean) / self.std


def compute(kind: str, images) -> Normalization:
    """Statistics of uint8 `images` (N, H, W, C), an array or an array-like read in chunks.

    per_pixel_mean: the mean image, std 1 (subtract the per-pixel mean, as the
    reference CIFAR-10 ResNet study does); per_channel: mean and std of each channel.
    """
    if kind not in KINDS:
        raise ValueError(f"normalization must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "none":
        return Normalization()
    n = len(images)
    total = np.zeros(images.shape[1:], np.float64)
    squares = np.zeros(images.shape[1:], np.float64)
    for start in range(0, n, CHUNK):
        chunk = np.asarray(images[start : start + CHUNK], np.float64) / 255.0
        total += chunk.sum(axis=0)
        squares += (chunk**2).sum(axis=0)
    if kind == "per_pixel_mean":
        return Normalization(kind, mean=total / n)
    channels = images.shape[-1]
    count = n * int(np.prod(images.shape[1:-1]))
    mean = total.reshape(-1, channels).sum(axis=0) / count
    variance = squares.reshape(-1, channels).sum(axis=0) / count - mean**2
    return Normalization(kind, mean=mean, std=np.sqrt(np.maximum(variance, 1e-12)))
