"""Undercomplete autoencoder: reconstruct the image through a code smaller than it.

Hinton & Salakhutdinov, "Reducing the Dimensionality of Data with Neural Networks", Science 2006.
"""

from __future__ import annotations

import math

import keras

from selfsup import encoders
from selfsup.pretext import reconstruction


class Autoencoder(reconstruction.ReconstructionMethod):
    name = "autoencoder"

    def build(self, encoder: keras.Model, options: dict, augmentation=None, total_steps=None) -> keras.Model:
        code_layer = options["code_layer"]
        code = math.prod(encoders.cut(encoder, code_layer, "code_layer").output_shape[1:])
        pixels = math.prod(encoder.input_shape[1:])
        if code >= pixels:
            # Without a bottleneck the identity map is a perfect, useless solution.
            where = "the encoder's code" if code_layer is None else f"the code (output of {code_layer})"
            raise ValueError(
                f"autoencoder: {where} has {code} values for {pixels} pixels; an undercomplete "
                "autoencoder needs fewer (use denoising_autoencoder or inpainting for wide codes)"
            )
        return super().build(encoder, options)
