"""DCGAN on FashionMNIST with the stabilisers chosen from the literature.

Changes from `dcgan.py`, nothing else (same widths, non-saturating loss, Adam 2e-4 /
0.5 / 0.999, batch 128, 50 epochs), so that a comparison isolates them:
  * spectral normalisation of every D layer (Miyato et al. 2018), which replaces D's
    BatchNorm. Kurach et al. 2019 ("A Large-Scale Study of Regularization and
    Normalization in GANs") found it the one normalisation that helps across settings,
    with the non-saturating loss as good as the hinge loss; SN-GAN reports it stable
    with DCGAN's own Adam settings (lr 2e-4, b1 0.5, one D step).
  * an exponential moving average of G's weights, decay 0.999 (horizon ~1000 steps, two
    epochs), used for samples and FID (Yazici et al. 2019, "The Unusual Effectiveness of
    Averaging in GAN Training"; Karras et al. 2018).
R1 is left out: on top of spectral normalisation it is a second constraint on D's
gradients, and D's dropout (0.3) is kept as in `dcgan.py`.

Run:
  python -m experiments.train --config=experiments/configs/dcgan_best.py --workdir=results/best
Measure (3 seeds, FID at N=10,000, against dcgan.py measured the same way):
  python -m benchmarks.quality --config=experiments/configs/dcgan_best.py --seeds=3
Variants:
  :smoke  tiny widths, one short epoch, every output written (tests; the grids are noise)
  :cpu    full widths, 5 epochs, FID at N=500

Measured (NVIDIA H200, seeds 0-2, N=10,000 vs test[:10,000]): FID 25.77 ± 0.47 against
24.45 ± 1.15 for `dcgan.py`, with higher precision (0.468 vs 0.447) and lower recall
(0.365 vs 0.418). This choice from the papers cited is NOT an improvement on FashionMNIST
at 50 epochs; other combinations have not been measured yet (README, "Quality").
"""

from experiments.configs import dcgan
from jaxgan.training.config import unknown_variant

VARIANTS = dcgan.VARIANTS


def get_config(variant: str = ""):
    if variant not in ("", *VARIANTS):
        raise unknown_variant(__file__, variant, VARIANTS)
    config = dcgan.get_config(variant).unlock()
    config.model.spectral_norm = True
    config.ema_decay = 0.999
    return config.lock()
