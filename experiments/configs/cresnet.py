"""The class-conditional ResNet GAN on FashionMNIST: `resnet.py` with labels.

G's BatchNorm is class-conditional (gains and biases from a shared class embedding,
BigGAN); D has a projection head with a spectrally normalised class embedding (Miyato &
Koyama 2018). Everything else is `resnet.py`'s. The sample grids have one row per class.

Run:
  python -m experiments.train --config=experiments/configs/cresnet.py --workdir=results/cresnet
Measure (FID at N=10,000, per-class FID and class accuracy):
  python -m benchmarks.quality --config=experiments/configs/cresnet.py --seeds=3
Variants: as `resnet.py` (:smoke, :cpu, :bf16).

Measured: not yet (no GPU so far); 2.17 TFLOP per train step, as `resnet.py`
(`benchmarks.step_cost`). `bash benchmarks/device_campaign.sh cresnet` trains it for the
epochs that fit in 4 minutes of steps on the device and scores it, per class too
(docs/quality.md).
"""

from experiments.configs import resnet
from jaxgan.training.config import unknown_variant

VARIANTS = resnet.VARIANTS


def get_config(variant: str = ""):
    if variant not in ("", *VARIANTS):
        raise unknown_variant(__file__, variant, VARIANTS)
    config = resnet.get_config(variant).unlock()
    config.conditional = True
    return config.lock()
