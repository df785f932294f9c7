"""Latency and throughput of `experiments.serve` on loopback: 1, 16 and 64 images per request,
from 1 and 32 concurrent clients. One JSON line per case.

    python -m benchmarks.serve_speed --url=http://127.0.0.1:8000
    python -m benchmarks.serve_speed --workdir=results/dcgan [--server_flag=--batching=false]
    python -m benchmarks.serve_speed --config=experiments/configs/dcgan.py

--workdir starts a server on that run (and stops it after); --config writes an untrained
checkpoint of that config to a temporary folder first (the generator's cost does not
depend on its training). Each client keeps one HTTP connection and requests PNG grids with
new seeds; latency is measured by the client, from sending the request to the last byte.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from absl import app, flags

from benchmarks import common

flags.DEFINE_string("url", None, "A running server, e.g. http://127.0.0.1:8000.")
flags.DEFINE_string("workdir", None, "Start a server on this training workdir.")
flags.DEFINE_string(
    "config", None, "Serve an untrained checkpoint of this config (path[:variant])."
)
flags.DEFINE_multi_string("server_flag", [], "Extra flags for the started server.")
flags.DEFINE_list("images", ["1", "16", "64"], "Images per request.")
flags.DEFINE_list("clients", ["1", "32"], "Concurrent clients.")
flags.DEFINE_integer("requests", 160, "Requests per case (after 8 warm-up requests).")
FLAGS = flags.FLAGS
REPO_ROOT = Path(__file__).resolve().parents[1]


def write_untrained_run(config_path: str, workdir: Path) -> None:
    """A workdir with config.json and an untrained step-0 checkpoint of `config_path`."""
    import jax

    from jaxgan.checkpoint import Checkpointer, signature
    from jaxgan.core import create_state
    from jaxgan.data.fashion_mnist import INFO

    path, _, variant = config_path.partition(":")
    spec = importlib.util.spec_from_file_location("served_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    state = create_state(
        config, jax.random.key(0), image_shape=INFO.image_shape, num_classes=INFO.num_classes
    )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config.to_dict()))
    meta = {"signature": signature(config, INFO), "dataset_info": INFO.to_dict()}
    checkpointer = Checkpointer(workdir / "checkpoints", keep=1)
    checkpointer.save(state, meta)
    checkpointer.close()


@contextlib.contextmanager
def started_server(workdir: Path, extra_flags: list[str]):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "experiments.serve", f"--workdir={workdir}",
               f"--port={port}", *extra_flags]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            with contextlib.suppress(OSError):
                if fetch_json(url, "/healthz").get("status") == "ok":
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {' '.join(command)}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def fetch_json(url: str, path: str) -> dict:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def run_case(url: str, images: int, clients: int, requests: int) -> dict:
    """Latencies of `requests` PNG grids of `images` images from `clients` threads."""
    parts = urllib.parse.urlsplit(url)
    counter, lock = iter(range(10**9)), threading.Lock()

    def client(count: int) -> list[float]:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        latencies = []
        for _ in range(count):
            with lock:
                seed = next(counter)
            started = time.perf_counter()
            connection.request("GET", f"/generate?n={images}&seed={seed}")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status} from /generate?n={images}")
            latencies.append(time.perf_counter() - started)
        connection.close()
        return latencies

    client(8)  # Warm-up: connections, the server's first calls of each bucket.
    shares = [requests // clients + (i < requests % clients) for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = np.concatenate(list(pool.map(client, shares))) * 1000
    seconds = time.perf_counter() - started
    return {
        "images_per_request": images,
        "clients": clients,
        "requests": requests,
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "mean_ms": round(float(latencies.mean()), 2),
        "requests_per_s": round(requests / seconds, 1),
        "images_per_s": round(requests * images / seconds, 1),
    }


def benchmark(url: str) -> None:
    health = fetch_json(url, "/healthz")
    for clients in (int(c) for c in FLAGS.clients):
        for images in (int(n) for n in FLAGS.images):
            record = run_case(url, images, clients, FLAGS.requests)
            common.emit({
                "benchmark": "serve_speed", **record, "server": url,
                "model": health["model"], "serving": health["serving"],
                "device": common.device_info(), "versions": common.versions(),
                "environment": common.relevant_environment(),
                "command": common.command_line("benchmarks.serve_speed"),
            })  # fmt: skip


def main(argv) -> None:
    del argv
    if sum(bool(x) for x in (FLAGS.url, FLAGS.workdir, FLAGS.config)) != 1:
        raise SystemExit("error: give exactly one of --url, --workdir or --config")
    if FLAGS.url:
        benchmark(FLAGS.url)
        return
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(FLAGS.workdir or Path(scratch) / "run")
        if FLAGS.config:
            write_untrained_run(FLAGS.config, workdir)
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        with started_server(workdir, FLAGS.server_flag) as url:
            benchmark(url)


if __name__ == "__main__":
    app.run(main)
