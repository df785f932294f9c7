"""Train any GAN that a config names.

    python -m experiments.train --config=experiments/configs/dcgan.py --workdir=results/run

Override any config field: `--config.dataset=tfds:cifar10 --config.loss=hinge`.
`--help` lists every field with its default and meaning.
"""

from absl import app

from experiments import _train_main

_train_main.define_flags("experiments/configs/dcgan.py", "results/run")

if __name__ == "__main__":
    app.run(
        _train_main.main,
        flags_parser=lambda argv: _train_main.parse_flags(
            argv, doc=__doc__, module="experiments.train"
        ),
    )
