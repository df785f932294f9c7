"""Class-conditional DCGAN on FashionMNIST.

G concatenates a learned label embedding to z; D is a projection discriminator (Miyato &
Koyama 2018). Everything else is `dcgan.py`'s: widths, Adam, batch 128, 50 epochs. The
sample grids have one row per class.

Run:
  python -m experiments.train --config=experiments/configs/cdcgan.py --workdir=results/cdcgan
Measure (3 seeds, FID at N=10,000, per-class FID and class accuracy):
  python -m benchmarks.quality --config=experiments/configs/cdcgan.py --seeds=3
Variants:
  :smoke  tiny widths, one short epoch, every output written (tests; the grids are noise)
  :cpu    full widths, 5 epochs, FID at N=500

Expected: after 50 epochs each row of `fashion_mnist_samples.png` shows its own class.
FID, per-class FID and class accuracy: to be measured with `benchmarks.quality` (the
README's Quality table).
"""

from experiments.configs import dcgan
from jaxgan.training.config import unknown_variant

VARIANTS = dcgan.VARIANTS


def get_config(variant: str = ""):
    if variant not in ("", *VARIANTS):
        raise unknown_variant(__file__, variant, VARIANTS)
    config = dcgan.get_config(variant).unlock()
    config.conditional = True
    return config.lock()
