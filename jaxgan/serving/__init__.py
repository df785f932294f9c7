"""Serving a training run's generator over HTTP: `python -m experiments.serve --workdir=DIR`.

`app` (the FastAPI app and its page), `params` (query validation), `model` (compiled,
reloadable snapshots), `batching` (the generator's worker thread), `metrics` (Prometheus).
"""
