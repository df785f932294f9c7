"""The vanilla MLP GAN on FashionMNIST.

Run:
  python -m experiments.vanilla --config=experiments/configs/vanilla.py --workdir=results/vanilla
Smoke (CPU, one short epoch):
  python -m experiments.vanilla --config=experiments/configs/vanilla.py:smoke --workdir=/tmp/smoke

Expected: blurry but recognisable garment shapes after 150 epochs.
"""

from jaxgan.models import model_config
from jaxgan.training.config import base_config, smoke, unknown_variant

VARIANTS = ("smoke",)


def get_config(variant: str = ""):
    config = base_config()
    config.model = model_config("mlp", g_width=256, d_width=256)
    config.latent_dim = 64
    config.batch_size = 100
    config.num_epochs = 150
    config.learning_rate = 2e-4
    config.b1 = 0.9
    config.sample_every = 1
    config.checkpoint_every = 5
    config.eval_every = 25
    if variant == "smoke":
        smoke(config, g_width=16, d_width=16, num_train_examples=2000, log_every_steps=5)
    elif variant:
        raise unknown_variant(__file__, variant, VARIANTS)
    return config.lock()
