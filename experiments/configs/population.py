"""Eight DCGANs on FashionMNIST, trained as one program (`config.population = 8`).

Run:
  python -m experiments.train --config=experiments/configs/population.py --workdir=results/pop8
Variants:
  :smoke  two tiny members, one short epoch, every output written (tests; grids are noise)
  :lr     eight members, each with its own learning rate (1e-4 to 5e-4)

Member i is the DCGAN of `dcgan.py` with seed i (its own initialisation, data order and
noise; its parameters equal that single run's up to float rounding), so the eight FIDs are
eight seeds of `dcgan.py`. Outputs per member:
`samples/epoch_XXXX_member{i}.png`, `fashion_mnist_samples_member{i}.png`,
`fid_result_member{i}.txt`; `fid_result.txt` lists every member and the mean ± std, and
each line of `metrics.jsonl` has the members' means and a `members` list. Evaluation runs
once, after the last epoch (each member in turn).
"""

from experiments.configs import dcgan
from jaxgan.training.config import unknown_variant

VARIANTS = ("smoke", "lr")


def get_config(variant: str = ""):
    if variant not in ("", *VARIANTS):
        raise unknown_variant(__file__, variant, VARIANTS)
    config = dcgan.get_config("smoke" if variant == "smoke" else "").unlock()
    config.population = 8
    config.eval_every = config.num_epochs
    if variant == "smoke":
        config.population = 2
    elif variant == "lr":
        config.population_learning_rates = (1e-4, 1.5e-4, 2e-4, 2.5e-4, 3e-4, 3.5e-4, 4e-4, 5e-4)
    return config.lock()
