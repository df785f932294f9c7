"""The training program: the loop and its periodic actions, checkpoints, the workdir,
signals, the config, and many devices and processes. Everything impure lives here."""
