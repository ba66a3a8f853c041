"""Registry of pretext methods: one module per method, keyed by its config name.

A method module provides:
- `OPTIONS`: its options with their defaults (the types of the defaults are enforced);
- `check(options)` (optional): cross-option rules, raising ValueError with the reason;
- `pseudo_labels(num_images, options, seed) -> (positions, labels)` (optional): the
  labels its own workflow rule generates before training;
- `build(encoder, options) -> keras.Model`: the pretext model around `encoder`, with
  its loss and metrics set by `compile_args(options)`; study validation builds it
  once, so a ValueError here (options that do not fit the encoder) stops the study
  before any job runs;
- `transform(images, labels, seed, options) -> batch`: the training batch (inputs,
  targets[, weights]) made from a float batch of images, scaled, normalized and
  augmented by the input pipeline (selfsup.data.inputs), with their pseudo-labels
  (None-like zeros when the method has none) and a stateless per-batch `seed`;
- `examples(model, images, options, seed) -> dict[str, array]`: what the trained model
  does to a few images, as named image batches of equal length (e.g. input, corrupted,
  output), drawn as rows of the study's pretext figure;
- `PIXEL_TARGETS` (optional, True): its targets are the pixels in [0, 1], so the
  study's input normalization must be none;
- `SHARED_CODE` (optional): library files it runs besides its own module (relative to
  selfsup/), so that editing them re-runs its jobs.
"""

from selfsup.pretext import autoencoder, denoising_autoencoder, inpainting, rotation

METHODS = {
    "rotation": rotation,
    "autoencoder": autoencoder,
    "denoising_autoencoder": denoising_autoencoder,
    "inpainting": inpainting,
}


def get_method(name: str):
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(
            f"unknown pretext method {name!r}; choose one of {', '.join(sorted(METHODS))}"
        ) from None


def has_pseudo_labels(name: str) -> bool:
    return hasattr(get_method(name), "pseudo_labels")
