"""Denoising autoencoder: reconstruct the clean image from a noisy one.

Vincent et al., "Extracting and Composing Robust Features with Denoising Autoencoders", ICML 2008.
"""

from __future__ import annotations

from selfsup.pretext import reconstruction


class DenoisingAutoencoder(reconstruction.ReconstructionMethod):
    name = "denoising_autoencoder"
    OPTIONS = {
        **reconstruction.OPTIONS,
        # gaussian: add N(0, noise_level^2), clipped to [0, 1]; masking: zero a noise_level fraction of pixels.
        "noise": "gaussian",
        "noise_level": 0.3,
    }

    def check(self, options: dict, settings: dict | None = None) -> None:
        reconstruction.check(options)
        noise, level = options["noise"], options["noise_level"]
        if noise not in ("gaussian", "masking"):
            raise ValueError(f"noise must be gaussian or masking, got {noise!r}")
        if noise == "gaussian" and not level > 0:
            raise ValueError(
                f"noise_level is the Gaussian noise's standard deviation: it must be > 0, got {level}"
            )
        if noise == "masking" and not 0 < level < 1:
            raise ValueError(
                f"noise_level is the fraction of pixels masked: it must lie in (0, 1), got {level}"
            )

    def corrupt(self, images, options: dict, seed):
        if options["noise"] == "gaussian":
            return reconstruction.gaussian_noise(images, options["noise_level"], seed), None
        return reconstruction.masking_noise(images, options["noise_level"], seed), None
