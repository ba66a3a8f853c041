"""Registry of pretext methods: one class per method (selfsup.pretext.base.PretextMethod),
keyed by its config name. Adding a method is one module, one line here and its tests."""

from selfsup.pretext.autoencoder import Autoencoder
from selfsup.pretext.barlow_twins import BarlowTwins
from selfsup.pretext.base import PretextMethod
from selfsup.pretext.byol import BYOL
from selfsup.pretext.denoising_autoencoder import DenoisingAutoencoder
from selfsup.pretext.inpainting import Inpainting
from selfsup.pretext.nnclr import NNCLR
from selfsup.pretext.rotation import Rotation
from selfsup.pretext.simclr import SimCLR
from selfsup.pretext.simsiam import SimSiam
from selfsup.pretext.vicreg import VICReg

METHODS: dict[str, PretextMethod] = {
    "rotation": Rotation(),
    "autoencoder": Autoencoder(),
    "denoising_autoencoder": DenoisingAutoencoder(),
    "inpainting": Inpainting(),
    "simclr": SimCLR(),
    "nnclr": NNCLR(),
    "simsiam": SimSiam(),
    "barlow_twins": BarlowTwins(),
    "byol": BYOL(),
    "vicreg": VICReg(),
}


def get_method(name: str) -> PretextMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(
            f"unknown pretext method {name!r}; choose one of {', '.join(sorted(METHODS))}"
        ) from None


def has_pseudo_labels(name: str) -> bool:
    return get_method(name).has_pseudo_labels()
