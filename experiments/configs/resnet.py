"""A ResNet GAN (SNGAN/BigGAN style) on FashionMNIST, unconditional, with the modern recipe.

Changes from `dcgan.py`:
  * G: residual up-blocks (7x7 -> 14 -> 28) of 256 channels with BatchNorm; D: residual
    down-blocks of 128 channels, every layer spectrally normalised (Miyato et al. 2018),
    global sum pooling; orthogonal initialisation (Brock et al. 2019).
  * hinge loss, 2 D steps per G step, each on its own real batch (Gulrajani et al. 2017);
    Adam 2e-4 with betas (0, 0.999) (BigGAN), falling linearly to 0 over the run.
  * an EMA of G's weights (decay 0.999 from step 1000), sampled with its own BatchNorm
    statistics; DiffAugment `translation,cutout` on every image D sees (Zhao et al. 2020).

Run:
  python -m experiments.train --config=experiments/configs/resnet.py --workdir=results/resnet
Measure (FID at N=10,000 vs test[:10,000]):
  python -m benchmarks.quality --config=experiments/configs/resnet.py --seeds=3
Variants:
  :smoke  tiny widths, one short epoch, every output written (tests; the grids are noise)
  :cpu    narrow widths, 2 epochs on 6,000 images, FID at N=500: a check that it all runs
          (2-core CPU, commit 8837841: 1 min 36 s, 2.99 GB peak; 92 steps learn little,
          FID 323.9)
  :bf16   the full config with bfloat16 compute (float32 parameters)

Measured: on the 2-core CPU, `:cpu` on all 60,000 images for 3 epochs (seed 1) reached FID
130.7 at N=500 (commit d4ff3bd; before it D's learning rate reached 0 half-way and every
such run collapsed, docs/quality.md). On a GPU, FID not yet (no GPU so far). The full
variant was sized by guess for about 5 minutes of one H200 (40 epochs of 234 steps, 2 D
steps each). XLA counts 2.17 TFLOP per step, 64x the DCGAN's (`benchmarks.step_cost`):
8.1 min at the DCGAN's measured H200 rate of 42 TFLOP/s, 3.4 min at 100 TFLOP/s.
`bash benchmarks/device_campaign.sh resnet` times 50 steps on the device, trains the whole
epochs that fit in 4 minutes of steps (at most these 40, so the learning-rate decay ends)
and scores the run (docs/benchmarks.md, docs/quality.md).
"""

from jaxgan.models import model_config
from jaxgan.training.config import base_config, smoke, unknown_variant

VARIANTS = ("smoke", "cpu", "bf16")


def get_config(variant: str = ""):
    if variant not in ("", *VARIANTS):
        raise unknown_variant(__file__, variant, VARIANTS)
    config = base_config()
    config.model = model_config("resnet", g_width=256, d_width=128)
    config.latent_dim = 128
    config.loss = "hinge"
    config.d_steps = 2
    config.batch_size = 128
    config.num_epochs = 40
    config.learning_rate = 2e-4
    config.b1 = 0.0
    config.b2 = 0.999
    config.lr_decay = "linear"
    config.ema_decay = 0.999
    config.ema_start = 1000
    config.augment = "translation,cutout"
    config.sample_every = 5
    config.eval_every = 10
    if variant == "smoke":
        smoke(
            config, g_width=8, d_width=8, embed_dim=8, latent_dim=16, num_train_examples=256,
            batch_size=16, ema_start=0, log_every_steps=4,
        )  # fmt: skip
    elif variant == "cpu":
        config.model.g_width = 32
        config.model.d_width = 32
        config.num_epochs = 2
        config.num_train_examples = 6000
        config.batch_size = 64
        config.ema_start = 0
        config.ema_decay = 0.99
        config.sample_every = 1
        config.eval_every = 2
        config.fid_num_samples = 500
        config.kid_subset_size = 250  # Below N, so that KID has a spread over subsets.
        config.log_every_steps = 10
    elif variant == "bf16":
        config.dtype = "bfloat16"
    return config.lock()
