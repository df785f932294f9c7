"""DCGAN on FashionMNIST.

Run:
  python -m experiments.dcgan --config=experiments/configs/dcgan.py --workdir=results/dcgan
Smoke (CPU, one short epoch):
  python -m experiments.dcgan --config=experiments/configs/dcgan.py:smoke --workdir=/tmp/smoke

Expected: after 50 epochs `fashion_mnist_samples.png` shows recognisable clothing; the
FID measured for this config is in the README's results table.
"""

from jaxgan.config import base_config


def get_config(variant: str = ""):
    config = base_config()
    config.model = "dcgan"
    config.latent_dim = 100
    config.g_width = 64
    config.d_width = 64
    config.batch_size = 128
    config.num_epochs = 50
    config.learning_rate = 2e-4
    config.b1 = 0.5
    config.sample_every = 5
    config.eval_every = 10
    if variant == "smoke":
        config.g_width = 8
        config.d_width = 8
        config.num_epochs = 1
        config.num_train_examples = 2048
        config.batch_size = 64
        config.sample_every = 1
        config.eval_every = 1
        config.fid_num_samples = 16
        config.fid_batch_size = 16
        config.kid_subset_size = 16
        config.kid_num_subsets = 10
        config.log_every_steps = 8
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; allowed: '' or 'smoke'")
    return config.lock()
