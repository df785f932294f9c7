"""Train the vanilla MLP GAN on FashionMNIST.

    python -m experiments.vanilla --config=experiments/configs/vanilla.py --workdir=results/vanilla

Override any config field: `--config.num_epochs=3 --config.batch_size=256`.
`--help` lists every field with its default and meaning.
"""

from absl import app

from experiments import _train_main

_train_main.define_flags("experiments/configs/vanilla.py", "results/vanilla")

if __name__ == "__main__":
    app.run(
        _train_main.main,
        flags_parser=lambda argv: _train_main.parse_flags(
            argv, doc=__doc__, module="experiments.vanilla"
        ),
    )
