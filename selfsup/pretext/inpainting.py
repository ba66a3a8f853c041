"""Inpainting: regions of the image are removed and the whole image is the target.

Pathak et al., "Context Encoders: Feature Learning by Inpainting", CVPR 2016.
"""

from __future__ import annotations

from selfsup.pretext import reconstruction


class Inpainting(reconstruction.ReconstructionMethod):
    name = "inpainting"
    OPTIONS = {
        **reconstruction.OPTIONS,
        # rectangle: one random rectangle per image; patches: a random subset of a patch grid.
        "region": "rectangle",
        # Fraction of the image removed: the rectangle's area, or the share of patches.
        "mask_fraction": 0.25,
        "patch_size": 4,
        # Value of removed pixels; gray stands out from the black background of MNIST-like images.
        "fill": 0.5,
        # Loss weight of removed pixels relative to kept ones (1: plain reconstruction).
        "region_weight": 1.0,
    }

    def check(self, options: dict, settings: dict | None = None) -> None:
        reconstruction.check(options)
        if options["region"] not in ("rectangle", "patches"):
            raise ValueError(f"region must be rectangle or patches, got {options['region']!r}")
        if not 0 < options["mask_fraction"] < 1:
            raise ValueError(f"mask_fraction must lie in (0, 1), got {options['mask_fraction']}")
        if options["patch_size"] < 1:
            raise ValueError(f"patch_size must be >= 1, got {options['patch_size']}")
        if not 0 <= options["fill"] <= 1:
            raise ValueError(f"fill is a pixel value: it must lie in [0, 1], got {options['fill']}")
        if not options["region_weight"] > 0:
            raise ValueError(f"region_weight must be > 0, got {options['region_weight']}")

    def corrupt(self, images, options: dict, seed):
        """Images with the removed region set to `fill`, and pixel loss weights (None when uniform)."""
        if options["region"] == "rectangle":
            mask = reconstruction.rectangle_mask(images, options["mask_fraction"], seed)
        else:
            mask = reconstruction.patch_mask(images, options["patch_size"], options["mask_fraction"], seed)
        corrupted = images * (1.0 - mask) + options["fill"] * mask
        weights = None
        if options["region_weight"] != 1.0:
            weights = reconstruction.region_weights(mask, options["region_weight"])
        return corrupted, weights
