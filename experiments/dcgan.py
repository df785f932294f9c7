"""Train the DCGAN on FashionMNIST.

    python -m experiments.dcgan --config=experiments/configs/dcgan.py --workdir=results/dcgan

Override any config field: `--config.num_epochs=3 --config.batch_size=256`.
`--help` lists every field with its default and meaning.
"""

from absl import app

from experiments import _train_main

_train_main.define_flags("experiments/configs/dcgan.py", "results/dcgan")

if __name__ == "__main__":
    app.run(
        _train_main.main,
        flags_parser=lambda argv: _train_main.parse_flags(
            argv, doc=__doc__, module="experiments.dcgan"
        ),
    )
