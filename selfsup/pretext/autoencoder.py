"""Undercomplete autoencoder: reconstruct the image through a code smaller than it.

Hinton & Salakhutdinov, "Reducing the Dimensionality of Data with Neural Networks", Science 2006.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from selfsup.pretext import reconstruction

OPTIONS = dict(reconstruction.OPTIONS)
SHARED_CODE = ("pretext/reconstruction.py",)


def check(options: dict) -> None:
    reconstruction.check(options)


def build(encoder: keras.Model, options: dict) -> keras.Model:
    code = math.prod(encoder.output_shape[1:])
    pixels = math.prod(encoder.input_shape[1:])
    if code >= pixels:
        # Without a bottleneck the identity map is a perfect, useless solution.
        raise ValueError(
            f"autoencoder: the encoder's code has {code} values for {pixels} pixels; an undercomplete "
            "autoencoder needs fewer (use denoising_autoencoder or inpainting for wide codes)"
        )
    return reconstruction.build(encoder, options, name="autoencoder")


def compile_args(options: dict) -> dict:
    return reconstruction.compile_args(options)


def dataset(images: np.ndarray, pseudo, options: dict, batch_size: int, seed: int):
    return reconstruction.dataset(images, None, options, batch_size, seed)


def examples(model: keras.Model, images: np.ndarray, options: dict, seed: int) -> dict:
    return reconstruction.examples(model, images, None, options, seed)
