"""The FastAPI app: /, /generate, /interpolate, /healthz and /metrics.

Every query is parsed by `jaxgan.serving.params` before any work: a bad value is HTTP 422
with `{"error": message, "parameter": name, "allowed": what}`. 503 means no checkpoint is
loaded yet (`--watch` on a run that has not saved one). A 500 is a bug: the catch-all
handler answers it as JSON and logs the traceback.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import math
import time
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from jaxgan import images as images_lib
from jaxgan.serving import params as params_lib
from jaxgan.serving.batching import Batcher, GenerateJob, NotReadyError, Result, WalkJob
from jaxgan.serving.metrics import CONTENT_TYPE, ServeMetrics
from jaxgan.serving.model import (
    DEFAULT_BUCKETS,
    ModelHolder,
    Snapshot,
    check_member,
    load_snapshot,
    newest_step,
)

log = logging.getLogger(__name__)

ENDPOINTS = ("/", "/generate", "/interpolate", "/healthz", "/metrics")
PNG_COMPRESS_LEVEL = 1  # Grids are small; level 1 encodes several times faster than 6.


class _RequestMetrics:
    """ASGI middleware: counts every response by endpoint and status, and times it."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"  # Bounded label values.
        status = 500

        async def send_and_record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.observe_request(endpoint, status, time.perf_counter() - started)


def _png(picture: np.ndarray) -> bytes:
    if picture.shape[-1] == 1:
        picture = picture[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _npz(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, images=images)
    return buffer.getvalue()


def _image_response(result: Result, form: str, columns: int, name: str) -> Response:
    headers = {"X-Checkpoint-Step": str(result.step), "Cache-Control": "no-store"}
    if form == "npz":
        headers["Content-Disposition"] = f'attachment; filename="{name}.npz"'
        return Response(_npz(result.images), media_type="application/octet-stream", headers=headers)
    grid = images_lib.make_grid(result.images, columns=columns)
    return Response(_png(grid), media_type="image/png", headers=headers)


def _error(status_code: int, message: str, **fields) -> JSONResponse:
    return JSONResponse({"error": message, **fields}, status_code=status_code)


def health(snapshot: Snapshot, holder: ModelHolder, batcher: Batcher) -> dict:
    """What /healthz reports: the checkpoint, the model, the dataset and the serving set-up."""
    config = snapshot.config
    return {
        "status": "ok",
        "step": snapshot.step,
        "workdir": str(holder.workdir),
        "member": snapshot.member,
        "model": {
            "name": config.model["name"],
            "latent_dim": snapshot.latent_dim,
            "conditional": bool(snapshot.num_classes),
            "num_classes": snapshot.num_classes,
            "g_width": config.model.get("g_width"),
            "weights": "ema" if snapshot.state.g_ema else "generator",
        },
        "dataset": {
            "name": snapshot.dataset["name"],
            "image_shape": list(snapshot.dataset["image_shape"]),
            "num_classes": snapshot.dataset["num_classes"],
            "class_names": list(snapshot.dataset["class_names"]),
        },
        "serving": {
            "buckets": sorted(snapshot.programs.generators),
            "seconds_per_call": {
                str(bucket): round(cost, 5)
                for bucket, cost in sorted(snapshot.programs.costs.items())
            },
            "batching": batcher.batching,
            "batch_images": batcher.max_images,
            "max_wait_ms": batcher.max_wait_s * 1000,
        },
        "limits": {
            "n": [1, params_lib.MAX_IMAGES],
            "seed": [0, params_lib.MAX_SEED],
            "steps": [params_lib.MIN_STEPS, params_lib.MAX_STEPS],
            "format": list(params_lib.FORMATS),
        },
    }


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON: 422 for a bad parameter, 503 before the first checkpoint, the
    HTTP status of routing errors, and 500 (logged) for anything else."""

    @app.exception_handler(params_lib.ParameterError)
    async def parameter_error(request: Request, error: params_lib.ParameterError):
        return _error(422, str(error), parameter=error.parameter, allowed=error.allowed)

    @app.exception_handler(NotReadyError)
    async def not_ready(request: Request, error: NotReadyError):
        return _error(503, str(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return _error(error.status_code, str(error.detail), path=request.url.path)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        log.error("internal error on %s", request.url.path, exc_info=error)
        return _error(500, f"internal error ({type(error).__name__}); see the server's log")


def create_app(holder: ModelHolder, batcher: Batcher, metrics: ServeMetrics) -> FastAPI:
    """The app serving `holder`'s snapshot through `batcher`; starts and stops the batcher."""

    async def lifespan(app):
        batcher.start()
        yield
        holder.stop()
        batcher.stop()

    app = FastAPI(
        title="jaxgan", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    page = resources.files("jaxgan.serving").joinpath("static/index.html").read_bytes()

    def snapshot_or_raise() -> Snapshot:
        snapshot = holder.current
        if snapshot is None:
            raise NotReadyError(f"no checkpoint in {holder.workdir} yet; waiting for one")
        return snapshot

    async def run(job) -> Result:
        return await asyncio.wrap_future(batcher.submit(job))

    _add_error_handlers(app)

    @app.get("/")
    async def index() -> Response:
        return Response(page, media_type="text/html; charset=utf-8")

    @app.get("/generate")
    async def generate(request: Request) -> Response:
        snapshot = snapshot_or_raise()
        query = params_lib.parse_generate(
            request.query_params.multi_items(), snapshot.num_classes, snapshot.class_names
        )
        result = await run(GenerateJob(query.seed, query.n, query.label))
        columns = math.ceil(math.sqrt(query.n))
        if snapshot.num_classes and query.label is None:
            columns = min(snapshot.num_classes, query.n)  # One column per class.
        return await run_in_threadpool(
            _image_response, result, query.format, columns, f"seed{query.seed}_n{query.n}"
        )

    @app.get("/interpolate")
    async def interpolate(request: Request) -> Response:
        snapshot = snapshot_or_raise()
        query = params_lib.parse_interpolate(
            request.query_params.multi_items(), snapshot.num_classes, snapshot.class_names
        )
        result = await run(WalkJob(query.seed_a, query.seed_b, query.steps, query.label))
        name = f"walk_{query.seed_a}_{query.seed_b}_{query.steps}"
        return await run_in_threadpool(_image_response, result, query.format, query.steps, name)

    @app.get("/healthz")
    async def healthz() -> Response:
        snapshot = holder.current
        if snapshot is None:
            return _error(
                503, f"no checkpoint in {holder.workdir} yet; waiting for one", status="waiting"
            )
        return JSONResponse(health(snapshot, holder, batcher))

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.text(), media_type=CONTENT_TYPE)

    app.add_middleware(_RequestMetrics, metrics=metrics)
    return app


def build_app(
    workdir: str,
    *,
    image_latents,
    slerp,
    member: int | None = None,
    watch: bool = False,
    poll_seconds: float = 2.0,
    buckets=DEFAULT_BUCKETS,
    batching: bool = True,
    batch_images: int = 16,
    max_wait_ms: float = 0.0,
) -> FastAPI:
    """Loads and compiles `workdir`'s latest checkpoint, then returns the app serving it.

    Args:
      workdir: a training workdir.
      image_latents, slerp: the latent recipe of `jaxgan.evaluation.generation`.
      member: the GAN of a population's workdir to serve (0 to K-1), also after each
        `watch` reload; None for a single GAN's workdir.
      watch: reload newer checkpoints in the background; the app also starts before the
        run's first checkpoint (answering 503 until it exists).
      poll_seconds: how often `watch` looks for a newer checkpoint.
      buckets: the batch sizes compiled at load time.
      batching, max_wait_ms: see `Batcher`; `batch_images` is its `max_images`.

    Raises:
      FileNotFoundError, CheckpointError: without `watch`, no usable checkpoint.
      ValueError: `member` is missing or out of range for a population's workdir, or
        given for a single GAN's (with `watch`, checked once the workdir has its config).
    """
    metrics = ServeMetrics()
    load = functools.partial(
        _load, image_latents=image_latents, slerp=slerp, buckets=buckets, member=member
    )
    holder = ModelHolder(
        workdir,
        load,
        on_swap=lambda snapshot: metrics.step.set(snapshot.step),
        on_failed_reload=lambda step: metrics.reloads.labels("failed").inc(),
    )
    if not watch or newest_step(workdir) is not None:
        holder.load_latest()
    else:  # Refuse a wrong member now, not at every reload of a run in progress.
        check_member(workdir, member)
    batcher = Batcher(
        lambda: holder.current,
        max_images=batch_images,
        max_wait_s=max_wait_ms / 1000,
        batching=batching,
        on_pass=metrics.observe_pass,
    )
    app = create_app(holder, batcher, metrics)
    if watch:
        holder.start_watching(poll_seconds)
    app.state.holder = holder
    return app


def _load(workdir, step, reuse, **settings) -> Snapshot:
    return load_snapshot(
        workdir, step=step, reuse=reuse, max_steps=params_lib.MAX_STEPS, **settings
    )
