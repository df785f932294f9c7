"""DCGAN on FashionMNIST.

Run:
  python -m experiments.dcgan --config=experiments/configs/dcgan.py --workdir=results/dcgan
Variants:
  :smoke  tiny widths, one short epoch, every output written (tests; the grids are noise)
  :cpu    full widths, 5 epochs, FID at N=500: recognisable clothing on a laptop CPU

Expected: after 50 epochs `fashion_mnist_samples.png` shows recognisable clothing, and
FID 24.45 ± 1.15 at N=10,000 against test[:10,000] (seeds 0-2, NVIDIA H200; README,
"Quality").
"""

from jaxgan.models import model_config
from jaxgan.training.config import base_config, smoke, unknown_variant

VARIANTS = ("smoke", "cpu")


def get_config(variant: str = ""):
    config = base_config()
    config.model = model_config("dcgan", g_width=64, d_width=64)
    config.latent_dim = 100
    config.batch_size = 128
    config.num_epochs = 50
    config.learning_rate = 2e-4
    config.b1 = 0.5
    config.sample_every = 5
    config.eval_every = 10
    if variant == "smoke":
        smoke(config, g_width=8, d_width=8, num_train_examples=2048, batch_size=64,
              log_every_steps=8)  # fmt: skip
    elif variant == "cpu":
        config.num_epochs = 5
        config.sample_every = 1
        config.eval_every = 5
        config.fid_num_samples = 500
        config.kid_subset_size = 250  # Below N, so that KID has a spread over subsets.
        config.log_every_steps = 10
    elif variant:
        raise unknown_variant(__file__, variant, VARIANTS)
    return config.lock()
