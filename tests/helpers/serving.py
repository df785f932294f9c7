"""Tiny checkpoints written directly, and `experiments.serve` run as a subprocess."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_config(*, conditional: bool, ema: bool):
    from jaxgan.training.config import base_config

    config = base_config()
    config.latent_dim = 8
    config.model.g_width = 4
    config.model.d_width = 4
    config.conditional = conditional
    config.ema_decay = 0.9 if ema else 0.0
    return config


def write_checkpoint(workdir: Path, config, step: int, *, seed: int = 0) -> None:
    """Saves a fresh state of `config` as checkpoint `step`, its weights drawn from `seed`
    (EMA weights set apart from the raw ones, so that using either is visible)."""
    from jaxgan.core import create_state
    from jaxgan.data.fashion_mnist import INFO

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config.to_dict()))
    state = create_state(
        config, jax.random.key(seed), image_shape=INFO.image_shape, num_classes=INFO.num_classes
    )
    _save(workdir, config, state, step)


def write_population_checkpoint(workdir: Path, config, step: int, *, seed: int = 0):
    """Saves a fresh population state of `config` (`config.population` = K members, member
    i's weights drawn from `seed + i`, EMA weights set apart) as checkpoint `step`.

    Returns:
      The stacked state as saved (`jaxgan.core.population.member(state, i)` is member i).
    """
    from jaxgan.core import population
    from jaxgan.data.fashion_mnist import INFO

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config.to_dict()))
    keys = [jax.random.key(seed + index) for index in range(population.size(config))]
    state = population.create(
        config,
        keys,
        population.learning_rates(config),
        image_shape=INFO.image_shape,
        num_classes=INFO.num_classes,
    )
    return _save(workdir, config, state, step)


def _save(workdir: Path, config, state, step: int):
    from jaxgan.checkpoint import Checkpointer, signature
    from jaxgan.data.fashion_mnist import INFO

    if state.g_ema:
        state = state.replace(g_ema=jax.tree_util.tree_map(lambda p: p * 1.5, state.g_ema))
    state = state.replace(step=jax.numpy.full_like(state.step, step, jax.numpy.int32))
    meta = {
        "epoch": 1,
        "steps_per_epoch": 1,
        "signature": signature(config, INFO),
        "dataset_info": INFO.to_dict(),
    }
    checkpointer = Checkpointer(workdir / "checkpoints", keep=3)
    checkpointer.save(state, meta)
    checkpointer.close()
    return state


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str, timeout: float = 60) -> tuple[int, dict, bytes]:
    """(status, headers, body) of GET `path` on the loopback server at `port`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def npz_images(body: bytes) -> np.ndarray:
    import io

    with np.load(io.BytesIO(body), allow_pickle=False) as archive:
        assert archive.files == ["images"]
        return archive["images"]


@contextlib.contextmanager
def serve(workdir: Path, *flags: str, log_path: Path, ready_timeout: float = 300):
    """Runs `python -m experiments.serve` on a free loopback port; yields the port once
    /healthz answers (or, with --watch and no checkpoint, once it answers 503)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "experiments.serve",
        f"--workdir={workdir}",
        "--host=127.0.0.1",
        f"--port={port}",
        *flags,
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if process.poll() is not None:
                    raise AssertionError(
                        f"server exited {process.returncode}: {log_path.read_text()[-3000:]}"
                    )
                with contextlib.suppress(OSError):
                    status, _, _ = get(port, "/healthz", timeout=5)
                    if status in (200, 503):
                        break
                if time.monotonic() > deadline:
                    raise AssertionError(f"server not ready: {log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
