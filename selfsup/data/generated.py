"""Sources that need no download: scikit-learn's bundled digits and generated images."""

from __future__ import annotations

import numpy as np

from selfsup.data.dataset import Dataset


def load_digits(test_size: int = 297) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), last images as test."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    # Pixel values are 0..16; scale to the 0..255 range every other source uses.
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    cut = len(images) - test_size
    return Dataset(images[:cut], labels[:cut], images[cut:], labels[cut:], [str(d) for d in range(10)])


def make_synthetic(
    n_train: int = 512, n_test: int = 128, image_size: int = 16, num_classes: int = 4, seed: int = 0
) -> Dataset:
    """Small images with an upright orientation, so a rotation model can learn it.

    Every image has a bright ground line at the bottom and a class-specific glyph above
    it, jittered in position and with pixel noise. Classes differ by glyph; rotations
    differ by where the ground line lies.
    """
    rng = np.random.default_rng(seed)
    size = image_size
    glyph_size = max(3, size // 2)
    glyphs = rng.random((num_classes, glyph_size, glyph_size)) > 0.55

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, num_classes, n)
        images = rng.normal(20, 10, (n, size, size))
        images[:, size - 2 :, 1 : size - 1] += 200
        for i, label in enumerate(labels):
            top = rng.integers(1, size - 2 - glyph_size + 1)
            left = rng.integers(0, size - glyph_size + 1)
            images[i, top : top + glyph_size, left : left + glyph_size] += 180 * glyphs[label]
        return np.clip(images, 0, 255).astype(np.uint8)[..., None], labels.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset(x_train, y_train, x_test, y_test, [f"glyph{c}" for c in range(num_classes)])
