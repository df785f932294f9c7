"""jaxgan: pure-functional GANs in JAX/Flax, with exact FID."""

from jaxgan.core import GANState, create_state, sample, train_epoch, train_step

__all__ = ["GANState", "create_state", "sample", "train_epoch", "train_step"]
__version__ = "0.1.0"
