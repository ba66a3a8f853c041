"""Undercomplete autoencoder: reconstruct the image through a code smaller than it.

Hinton & Salakhutdinov, "Reducing the Dimensionality of Data with Neural Networks", Science 2006.
"""

from __future__ import annotations

import math

import keras

from selfsup.pretext import reconstruction

OPTIONS = dict(reconstruction.OPTIONS)
SHARED_CODE = ("pretext/reconstruction.py",)
PIXEL_TARGETS = True
check = reconstruction.check
_build, compile_args, transform, examples = reconstruction.method_functions("autoencoder", corrupt=None)


def build(encoder: keras.Model, options: dict) -> keras.Model:
    code = math.prod(encoder.output_shape[1:])
    pixels = math.prod(encoder.input_shape[1:])
    if code >= pixels:
        # Without a bottleneck the identity map is a perfect, useless solution.
        raise ValueError(
            f"autoencoder: the encoder's code has {code} values for {pixels} pixels; an undercomplete "
            "autoencoder needs fewer (use denoising_autoencoder or inpainting for wide codes)"
        )
    return _build(encoder, options)
