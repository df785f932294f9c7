"""`python -m experiments.serve` on loopback: images, validation (fuzzed), load, reload.

Servers run as subprocesses on tiny checkpoints written directly (`tests/helpers/serving.py`):
a class-conditional one with EMA weights set apart from the raw ones, and an unconditional
one.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxgan.evaluation import generation
from jaxgan.serving import params as params_lib
from jaxgan.serving.model import bucket_for, plan_calls
from tests.helpers.serving import (
    REPO_ROOT,
    get,
    npz_images,
    serve,
    tiny_config,
    write_checkpoint,
    write_population_checkpoint,
)

pytestmark = pytest.mark.slow
PAD = 2  # make_grid's padding.
SIZE = 28
STEP = 5


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("conditional")
    write_checkpoint(workdir, tiny_config(conditional=True, ema=True), STEP)
    return workdir


@pytest.fixture(scope="module")
def conditional_server(conditional_run, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "conditional.log"
    with serve(conditional_run, log_path=log) as port:
        yield port
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("plain")
    write_checkpoint(workdir, tiny_config(conditional=False, ema=False), 3)
    log = tmp_path_factory.mktemp("logs") / "plain.log"
    with serve(workdir, "--buckets=1,16", log_path=log) as port:
        yield port
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def restored_state(workdir):
    from jaxgan.checkpoint import load_run

    return load_run(workdir)[1]


def generate_command_images(state, seed, count, label=None, use_ema=True):
    """What `experiments.generate --seed=seed --num=count [--label]` generates."""
    if use_ema:
        return np.concatenate(list(generation.generate(state, seed, count, label=label)))
    from jaxgan.core import sample
    from jaxgan.metrics import to_uint8

    latents = generation.image_latents(seed, np.arange(count), latent_dim=state.latent_dim)
    labels = generation.image_labels(np.arange(count), state.num_classes, label)
    return to_uint8(np.asarray(sample(state, latents, labels, use_ema=False)))


def fetch_npz(port, path) -> tuple[np.ndarray, dict]:
    status, headers, body = get(port, path)
    assert status == 200, body[:500]
    return npz_images(body), headers


def grid_tiles(png: bytes, count: int, columns: int) -> np.ndarray:
    import io

    grid = np.asarray(Image.open(io.BytesIO(png)))
    rows = -(-count // columns)
    assert grid.shape == (rows * (SIZE + PAD) + PAD, columns * (SIZE + PAD) + PAD)
    return np.stack(
        [
            grid[PAD + r * (SIZE + PAD) :][:SIZE, PAD + c * (SIZE + PAD) :][:, :SIZE]
            for r, c in (divmod(i, columns) for i in range(count))
        ]
    )[..., None]


# --- pure parts ---------------------------------------------------------------------------------


def test_plan_calls_covers_the_count_at_the_least_measured_cost():
    flat = {1: 1.0, 16: 16.0, 64: 64.0}  # Per-image cost constant: no padding pays.
    assert plan_calls(20, flat) == [16, 1, 1, 1, 1]
    cheap_batches = {1: 1.0, 16: 2.0, 64: 3.0}  # Overhead-bound: one padded call wins.
    assert plan_calls(20, cheap_batches) == [64]
    assert plan_calls(17, {1: 1.0, 16: 4.0, 64: 20.0}) == [16, 1]
    for count in range(1, 300):
        assert sum(plan_calls(count, cheap_batches)) >= count
    assert bucket_for(17, (1, 16, 64)) == 64 and bucket_for(500, (1, 16)) == 16


@pytest.mark.parametrize(
    "query, parameter, needle",
    [
        ([("n", "0")], "n", "from 1 to 256"),
        ([("n", "1.0")], "n", "not an integer"),
        ([("n", "١٢")], "n", "not an integer"),  # Python's int() would take these digits.
        ([("n", "1_6")], "n", "not an integer"),
        ([("seed", "9" * 5000)], "seed", "out of range"),  # Past int()'s 4300-digit limit.
        ([("seed", "-5")], "seed", "0 to 2147483647"),
        ([("label", "10")], "label", "9=Ankle boot"),
        ([("format", "PNG")], "format", "png or npz"),
        ([("sed", "3")], "sed", "n, seed, label, format"),
        ([("n", "1"), ("n", "2")], "n", "more than once"),
    ],
)
def test_parameter_errors_name_the_parameter_and_what_is_allowed(query, parameter, needle):
    from jaxgan.data.fashion_mnist import INFO

    with pytest.raises(params_lib.ParameterError) as raised:
        params_lib.parse_generate(query, 10, INFO.class_names)
    assert raised.value.parameter == parameter
    assert parameter in str(raised.value) and needle in str(raised.value)
    assert len(str(raised.value)) < 600


def test_a_long_unknown_name_is_cut_as_a_long_value_is():
    with pytest.raises(params_lib.ParameterError) as raised:
        params_lib.parse_generate([("x" * 100_000, "1")], 0, [])
    assert raised.value.parameter == "x" * 40 + "... (100000 characters)"
    assert len(str(raised.value)) < 600


def test_leading_zeros_and_defaults_parse():
    parsed = params_lib.parse_generate([("n", "0" * 40 + "16"), ("seed", "007")], 0, [])
    assert parsed == params_lib.GenerateParams(n=16, seed=7, label=None, format="png")
    walk = params_lib.parse_interpolate([], 10, [str(i) for i in range(10)])
    assert walk == params_lib.InterpolateParams(0, 1, 8, None, "png")


class FakeSnapshot:
    """Latents of a job are its seed; the 'generator' returns them as 1x1 images."""

    num_classes, class_names, step = 0, [], 3

    def image_latents(self, seed, count):
        return np.full((count, 1), seed, np.float32)

    def generate(self, latents, labels):
        return latents.astype(np.uint8).reshape(-1, 1, 1, 1)


@pytest.mark.parametrize(
    "batching, max_images, passes",
    [(True, 16, [(3, 7)]), (True, 5, [(2, 5), (1, 2)]), (False, 16, [(1, 1), (1, 4), (1, 2)])],
)
def test_batcher_shares_passes_and_hands_each_request_its_images(batching, max_images, passes):
    from jaxgan.serving.batching import Batcher, GenerateJob

    seen = []
    batcher = Batcher(
        FakeSnapshot, max_images=max_images, batching=batching,
        on_pass=lambda jobs, images, seconds: seen.append((jobs, images)),
    )  # fmt: skip
    jobs = [GenerateJob(seed=1, n=1, label=None), GenerateJob(seed=2, n=4, label=None),
            GenerateJob(seed=3, n=2, label=None)]  # fmt: skip
    futures = [batcher.submit(job) for job in jobs]  # Queued before the worker starts.
    batcher.start()
    try:
        results = [future.result(timeout=30) for future in futures]
    finally:
        batcher.stop()
    for job, result in zip(jobs, results):
        assert result.step == 3 and result.images.shape == (job.n, 1, 1, 1)
        assert (result.images == job.seed).all()
    assert seen == passes


def test_a_bug_is_a_json_500_and_is_counted():
    """The catch-all handler: an exception inside a job answers 500 with JSON, not a hang."""
    from jaxgan.serving.app import create_app
    from jaxgan.serving.batching import Batcher
    from jaxgan.serving.metrics import ServeMetrics

    class BrokenSnapshot:
        num_classes, class_names, step = 0, [], 1

        def image_latents(self, seed, count):
            raise RuntimeError("a bug")

    class Holder:
        current, workdir = BrokenSnapshot(), Path("nowhere")

        def stop(self):
            pass

    metrics = ServeMetrics()
    batcher = Batcher(lambda: Holder.current)
    app = create_app(Holder(), batcher, metrics)

    async def call(path: str, query: str) -> tuple[int, bytes]:
        messages = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            messages.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "query_string": query.encode(),
                 "headers": [], "http_version": "1.1", "scheme": "http", "root_path": "",
                 "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1)}  # fmt: skip
        try:
            await app(scope, receive, send)
        except RuntimeError:
            pass  # Starlette re-raises after answering, for the server's log.
        start = next(m for m in messages if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return start["status"], body

    batcher.start()
    try:
        status, body = asyncio.run(call("/generate", "n=2"))
    finally:
        batcher.stop()
    assert status == 500
    assert json.loads(body)["error"].startswith("internal error (RuntimeError)")
    assert 'jaxgan_serve_requests_total{endpoint="/generate",status="500"} 1.0' in (
        metrics.text().decode()
    )


# --- the conditional server ---------------------------------------------------------------------


def test_generate_gives_experiments_generate_images_with_ema_weights(
    conditional_server, conditional_run
):
    state = restored_state(conditional_run)
    for seed, count, label in ((7, 16, None), (11, 64, 3), (2, 1, None)):
        query = f"/generate?n={count}&seed={seed}&format=npz" + (
            f"&label={label}" if label is not None else ""
        )
        images, headers = fetch_npz(conditional_server, query)
        assert images.dtype == np.uint8 and images.shape == (count, SIZE, SIZE, 1)
        assert headers["x-checkpoint-step"] == str(STEP)
        expected = generate_command_images(state, seed, count, label)
        # The same latents and classes; the pixels may differ by one step where a batch ran
        # in calls of other sizes (XLA's convolution schedule depends on the batch size).
        difference = np.abs(images.astype(int) - expected)
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
        if count == 1:  # One call of bucket 1, as the command's batch of 1: bit-equal.
            np.testing.assert_array_equal(images, expected)
        raw = generate_command_images(state, seed, count, label, use_ema=False)
        assert np.abs(images.astype(int) - raw).max() > 8, "served the raw weights, not EMA"
    images, _ = fetch_npz(conditional_server, "/generate?n=10&seed=4&format=npz")
    assert np.abs(images.astype(int) - generate_command_images(state, 4, 10)).max() <= 1


def test_snapshot_latents_are_the_commands_bit_for_bit(conditional_run):
    from jaxgan.serving.model import load_snapshot

    snapshot = load_snapshot(
        conditional_run, image_latents=generation.image_latents, slerp=generation.slerp,
        buckets=(1, 16), max_steps=16,
    )  # fmt: skip
    for seed, count in ((0, 1), (123, 16), (2**31 - 1, 40)):  # 40: three calls of 16.
        expected = generation.image_latents(seed, np.arange(count), latent_dim=8)
        np.testing.assert_array_equal(snapshot.image_latents(seed, count), expected)
    walk = snapshot.walk_latents(3, 4, 9)
    ends = (
        generation.image_latents(3, np.arange(1), latent_dim=8)[0],
        (generation.image_latents(4, np.arange(1), latent_dim=8)[0]),
    )
    fractions = np.arange(9, dtype=np.float32) / np.float32(8)
    expected = generation.slerp(np.stack([ends[0]] * 9), np.stack([ends[1]] * 9), fractions)
    np.testing.assert_allclose(walk, expected, rtol=1e-6, atol=1e-6)


def test_png_grid_has_one_column_per_class_and_the_npz_pixels(conditional_server):
    npz, _ = fetch_npz(conditional_server, "/generate?n=16&seed=9&format=npz")
    status, headers, png = get(conditional_server, "/generate?n=16&seed=9")
    assert status == 200 and headers["content-type"] == "image/png"
    np.testing.assert_array_equal(grid_tiles(png, 16, columns=10), npz)
    status, _, png = get(conditional_server, "/generate?n=16&seed=9&label=2")
    assert status == 200
    grid_tiles(png, 16, columns=4)  # A single class: a square grid.


def test_interpolate_walks_from_image_0_of_seed_a_to_image_0_of_seed_b(conditional_server):
    walk, _ = fetch_npz(conditional_server, "/interpolate?seed_a=5&seed_b=6&steps=12&format=npz")
    assert walk.shape == (12, SIZE, SIZE, 1)
    first, _ = fetch_npz(conditional_server, "/generate?n=1&seed=5&format=npz")
    last, _ = fetch_npz(conditional_server, "/generate?n=1&seed=6&label=0&format=npz")
    assert np.abs(walk[0].astype(int) - first[0]).max() <= 1
    assert np.abs(walk[-1].astype(int) - last[0]).max() <= 1
    middle_distance = np.abs(walk[6].astype(int) - walk[0]).mean()
    assert middle_distance > 0.5, "the walk does not move"
    status, _, png = get(conditional_server, "/interpolate?seed_a=5&seed_b=6&steps=12")
    assert status == 200
    np.testing.assert_array_equal(grid_tiles(png, 12, columns=12), walk)
    labelled, _ = fetch_npz(
        conditional_server, "/interpolate?seed_a=5&seed_b=6&steps=12&label=4&format=npz"
    )
    assert not np.array_equal(labelled, walk)


def test_healthz_reports_step_model_dataset_and_classes(conditional_server):
    from jaxgan.data.fashion_mnist import INFO

    status, _, body = get(conditional_server, "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["step"] == STEP
    assert health["model"] == {"name": "dcgan", "latent_dim": 8, "conditional": True,
                               "num_classes": 10, "g_width": 4, "weights": "ema"}  # fmt: skip
    assert health["dataset"]["class_names"] == list(INFO.class_names)
    assert health["dataset"]["image_shape"] == [28, 28, 1]
    assert health["serving"]["buckets"] == [1, 4, 16, 64, 256]


def metric_value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_requests_latency_and_images(conditional_server):
    def scrape() -> str:
        status, headers, body = get(conditional_server, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        return body.decode()

    before = scrape()
    assert get(conditional_server, "/generate?n=7&seed=1")[0] == 200
    assert get(conditional_server, "/generate?n=x")[0] == 422
    assert get(conditional_server, "/interpolate?steps=5")[0] == 200
    after = scrape()
    ok = 'jaxgan_serve_requests_total{endpoint="/generate",status="200"}'
    refused = 'jaxgan_serve_requests_total{endpoint="/generate",status="422"}'
    latency = 'jaxgan_serve_request_seconds_count{endpoint="/generate"}'
    assert metric_value(after, ok) - metric_value(before, ok) == 1
    assert metric_value(after, refused) - metric_value(before, refused) == 1
    assert metric_value(after, latency) - metric_value(before, latency) == 2
    images = "jaxgan_serve_images_generated_total"
    assert metric_value(after, images) - metric_value(before, images) == 7 + 5
    assert metric_value(after, "jaxgan_serve_checkpoint_step") == STEP
    assert 'jaxgan_serve_request_seconds_bucket{endpoint="/generate",le="0.1"}' in after


# --- fuzzing ------------------------------------------------------------------------------------

ENDPOINTS = {
    "/generate": {"n": (1, 256), "seed": (0, 2**31 - 1), "label": (0, 9), "format": None},
    "/interpolate": {
        "seed_a": (0, 2**31 - 1), "seed_b": (0, 2**31 - 1), "steps": (2, 64), "label": (0, 9),
        "format": None,
    },
    "/healthz": {},
    "/metrics": {},
}  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**70), 2**70).map(str),
    st.integers(-3, 300).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.just(""),
    st.text("0123456789", min_size=20, max_size=6000),
    st.sampled_from(["png", "npz", "PNG", " 1", "1 ", "+1", "1e3", "0x10", "１", "-0", "00"]),
)


def expected_valid(endpoint: str, query: list[tuple[str, str]]) -> bool:
    """An oracle written apart from jaxgan.serving.params: is every parameter acceptable?"""
    allowed = ENDPOINTS[endpoint]
    if endpoint in ("/healthz", "/metrics"):
        return True
    names = [name for name, _ in query]
    if len(set(names)) != len(names) or not set(names) <= set(allowed):
        return False
    for name, value in query:
        if name == "format":
            if value not in ("png", "npz"):
                return False
        elif not re.fullmatch(r"-?[0-9]+", value, re.ASCII):
            return False
        else:
            low, high = allowed[name]
            if not low <= int(value) <= high:
                return False
    return True


@st.composite
def requests(draw):
    """An endpoint and a query: its own parameters, each absent, valid (two thirds of the
    values drawn) or anything; sometimes unknown or repeated names too, in any order."""
    endpoint = draw(st.sampled_from(sorted(ENDPOINTS)))
    query = []
    for name, bounds in ENDPOINTS[endpoint].items():
        if draw(st.booleans()):
            valid = (
                st.sampled_from(["png", "npz"]) if bounds is None else st.integers(*bounds).map(str)
            )
            query.append((name, draw(valid if draw(st.integers(0, 2)) else VALUES)))
    if draw(st.integers(0, 3)) == 0:
        names = st.one_of(
            st.sampled_from([*ENDPOINTS["/generate"], *ENDPOINTS["/interpolate"]]),
            st.text(max_size=8),
        )
        query += draw(st.lists(st.tuples(names, VALUES), min_size=1, max_size=3))
    return endpoint, draw(st.permutations(query))


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=requests())
def test_fuzzed_queries_get_200_or_a_422_naming_the_parameter(conditional_server, request):
    sys.set_int_max_str_digits(0)  # The oracle converts 6000-digit strings.
    endpoint, query = request
    encoded = "&".join(
        f"{urllib.parse.quote(name, safe='')}={urllib.parse.quote(value, safe='')}"
        for name, value in query
    )
    status, headers, body = get(conditional_server, f"{endpoint}?{encoded}")
    event(f"{endpoint} {status}")
    assert status in (200, 422), (status, body[:300])
    if expected_valid(endpoint, query):
        assert status == 200, body[:300]
        if endpoint in ("/generate", "/interpolate"):
            form = dict(query).get("format", "png")
            assert (
                headers["content-type"]
                == {"png": "image/png", "npz": "application/octet-stream"}[form]
            )
        return
    assert status == 422, f"{endpoint}?{encoded} was accepted"
    payload = json.loads(body)
    assert payload["parameter"] in [name for name, _ in query]
    assert payload["parameter"] in payload["error"] and "allowed: " in payload["error"]
    assert payload["allowed"]


@settings(max_examples=60, deadline=None)
@given(raw=st.text(max_size=40))
def test_fuzzed_raw_query_strings_never_fail(conditional_server, raw):
    for endpoint in ENDPOINTS:
        path = f"{endpoint}?{urllib.parse.quote(raw, safe='=&;%+')}"
        status, _, body = get(conditional_server, path)
        assert status in (200, 422), (path, status, body[:300])


def test_a_long_unknown_name_gets_a_short_422(conditional_server):
    status, _, body = get(conditional_server, f"/generate?{'y' * 10_000}=1")
    payload = json.loads(body)
    assert status == 422 and len(body) < 1000
    assert payload["parameter"] == "y" * 40 + "... (10000 characters)"
    assert payload["parameter"] in payload["error"]


# --- the unconditional server -------------------------------------------------------------------


def test_unconditional_model_refuses_labels(plain_server):
    status, _, body = get(plain_server, "/generate?label=0")
    payload = json.loads(body)
    assert status == 422 and payload["parameter"] == "label"
    assert "unconditional" in payload["error"]
    health = json.loads(get(plain_server, "/healthz")[2])
    assert health["model"]["conditional"] is False and health["model"]["weights"] == "generator"
    images, _ = fetch_npz(plain_server, "/generate?n=256&format=npz")  # 16 calls of bucket 16.
    assert images.shape == (256, SIZE, SIZE, 1)
    status, _, _ = get(plain_server, "/interpolate?steps=64")
    assert status == 200


# --- load ---------------------------------------------------------------------------------------


def run_load(port, paths, clients, *, stop=None, deadline_s=300.0):
    """GETs `paths` from `clients` threads, until done, `stop` is set or the deadline.

    Returns [(path, status, checkpoint step, seconds, body)].
    """
    results, lock, position = [], threading.Lock(), iter(range(len(paths)))
    stop_at = time.monotonic() + deadline_s
    stop = stop or threading.Event()

    def client():
        mine = []
        while time.monotonic() < stop_at and not stop.is_set():
            with lock:
                index = next(position, None)
            if index is None:
                break
            started = time.perf_counter()
            try:
                status, headers, body = get(port, paths[index])
            except OSError as error:
                status, headers, body = -1, {}, repr(error).encode()
            step = headers.get("x-checkpoint-step")
            mine.append((paths[index], status, step, time.perf_counter() - started, body))
        return mine

    with ThreadPoolExecutor(clients) as pool:
        for mine in pool.map(lambda _: client(), range(clients)):
            results.extend(mine)
    return results


def latency_line(name, results):
    seconds = np.array([r[3] for r in results]) * 1000
    return (f"{name}: {len(results)} requests, p50 {np.percentile(seconds, 50):.1f} ms, "
            f"p99 {np.percentile(seconds, 99):.1f} ms, max {seconds.max():.1f} ms")  # fmt: skip


def test_load_500_requests_from_32_clients(conditional_server):
    rng = np.random.default_rng(0)
    seeds = range(6)
    solo = {
        s: fetch_npz(conditional_server, f"/generate?n=16&seed={s}&format=npz")[0] for s in seeds
    }
    kinds = [
        lambda: f"/generate?n=16&seed={rng.choice(seeds)}&format=npz",
        lambda: f"/generate?n={rng.choice([1, 4, 64])}&seed={rng.integers(2**31)}",
        lambda: f"/interpolate?seed_a={rng.integers(100)}&seed_b=3&steps={rng.integers(2, 65)}",
        lambda: "/healthz",
    ]
    paths = [kinds[i]() for i in rng.integers(len(kinds), size=500)]
    results = run_load(conditional_server, paths, clients=32)
    assert len(results) == 500, "the load did not finish within its time bound"
    failures = [(path, status, body[:200]) for path, status, _, _, body in results if status != 200]
    assert not failures, failures[:5]
    for path, _, _, _, body in results:
        if path.endswith("format=npz"):  # Batched with others, each gets its own images.
            seed = int(re.search(r"seed=(\d+)", path).group(1))
            assert np.abs(npz_images(body).astype(int) - solo[seed]).max() <= 1, path
    print("\n" + latency_line("load, 32 clients (tiny model, loopback)", results))


def test_reload_mid_load_drops_no_request(tmp_path):
    """--watch: a run's first checkpoint, then a newer one appearing during a load."""
    workdir, staging = tmp_path / "run", tmp_path / "staging"
    config = tiny_config(conditional=True, ema=True)
    write_checkpoint(staging, config, 20, seed=1)  # Moved in mid-load, as Orbax renames.
    workdir.mkdir()
    shutil.copy(staging / "config.json", workdir / "config.json")
    with serve(workdir, "--watch", "--poll_seconds=0.2", log_path=tmp_path / "log") as port:
        status, _, body = get(port, "/generate")
        assert status == 503 and "no checkpoint" in json.loads(body)["error"]
        write_checkpoint(workdir, config, 10, seed=0)
        deadline = time.monotonic() + 300
        while get(port, "/healthz")[0] != 200:
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()[-2000:]
            time.sleep(0.2)
        before, _ = fetch_npz(port, "/generate?n=4&seed=1&format=npz")

        # At most 3000 requests; the load stops 1 s after /healthz shows the new checkpoint.
        paths = [f"/generate?n=4&seed={i % 7}&format=npz" for i in range(3000)]
        results, stop = [], threading.Event()
        loader = threading.Thread(
            target=lambda: results.extend(run_load(port, paths, 8, stop=stop, deadline_s=180))
        )
        loader.start()
        time.sleep(1.0)
        (staging / "checkpoints" / "20").rename(workdir / "checkpoints" / "20")
        deadline = time.monotonic() + 120
        while loader.is_alive() and time.monotonic() < deadline:
            if json.loads(get(port, "/healthz")[2])["step"] == 20:
                time.sleep(1.0)
                break
            time.sleep(0.1)
        stop.set()
        loader.join()
        failures = [(p, s, b[:200]) for p, s, _, _, b in results if s != 200]
        assert not failures, failures[:5]
        steps = [int(step) for _, _, step, _, _ in results]
        print("\n" + latency_line("reload under load, 8 clients", results))
        print(f"steps served during the load: {steps.count(10)} x 10, {steps.count(20)} x 20")
        assert steps.count(10) > 0 and steps.count(20) > 0, "the reload did not happen mid-load"
        deadline = time.monotonic() + 300
        while json.loads(get(port, "/healthz")[2])["step"] != 20:
            assert time.monotonic() < deadline, "the new checkpoint was never served"
            time.sleep(0.2)
        after, headers = fetch_npz(port, "/generate?n=4&seed=1&format=npz")
        assert headers["x-checkpoint-step"] == "20"
        assert not np.array_equal(before, after), "the new weights are not used"
        new_state = restored_state(workdir)
        np.testing.assert_array_equal(after, generate_command_images(new_state, 1, 4))
    assert "Traceback" not in (tmp_path / "log").read_text()


# --- populations (config.population = K: K GANs in one workdir) ---------------------------------


def population_config():
    config = tiny_config(conditional=True, ema=True)
    config.population = 2
    return config


def member_images(stacked, member: int, seed: int, count: int) -> np.ndarray:
    """What `experiments.generate --member=member --seed=seed --num=count` generates."""
    from jaxgan.core import population

    return generate_command_images(population.member(stacked, member), seed, count)


def assert_images_of_member(images, stacked, member: int, seed: int) -> None:
    """`images` are member `member`'s (within one quantisation step), not the other's."""
    count = len(images)
    assert np.abs(images.astype(int) - member_images(stacked, member, seed, count)).max() <= 1
    other = member_images(stacked, 1 - member, seed, count)
    assert np.abs(images.astype(int) - other).max() > 8, "the members' images are alike"


def test_load_snapshot_of_a_member_serves_that_member(tmp_path):
    from jaxgan.serving.model import load_snapshot

    stacked = write_population_checkpoint(tmp_path, population_config(), STEP)
    settings = {"image_latents": generation.image_latents, "slerp": generation.slerp,
                "buckets": (1, 4), "max_steps": 4}  # fmt: skip
    second = load_snapshot(tmp_path, member=1, **settings)
    first = load_snapshot(tmp_path, member=0, reuse=second.programs, **settings)
    assert first.programs is second.programs  # The members share shapes: one compilation.
    labels = generation.image_labels(np.arange(4), 10, None)
    for member, snapshot in ((0, first), (1, second)):
        assert snapshot.member == member and snapshot.step == STEP
        assert snapshot.config.seed == member  # The member's own config.
        images = snapshot.generate(snapshot.image_latents(3, 4), labels)
        assert_images_of_member(images, stacked, member, 3)


def test_build_app_serves_the_member_and_watch_reloads_keep_it(tmp_path):
    from jaxgan.serving.app import build_app, health
    from jaxgan.serving.batching import Batcher

    config = population_config()
    stacked = write_population_checkpoint(tmp_path, config, 10)
    app = build_app(
        str(tmp_path), image_latents=generation.image_latents, slerp=generation.slerp,
        member=1, buckets=(1, 4),
    )  # fmt: skip
    holder = app.state.holder
    labels = generation.image_labels(np.arange(4), 10, None)
    snapshot = holder.current
    assert snapshot.step == 10 and snapshot.member == 1
    assert health(snapshot, holder, Batcher(lambda: holder.current))["member"] == 1
    assert_images_of_member(snapshot.generate(snapshot.image_latents(2, 4), labels), stacked, 1, 2)

    newer = write_population_checkpoint(tmp_path, config, 20, seed=5)
    assert holder.reload_if_newer()  # What --watch does at each poll.
    snapshot = holder.current
    assert snapshot.step == 20 and snapshot.member == 1
    assert_images_of_member(snapshot.generate(snapshot.image_latents(2, 4), labels), newer, 1, 2)


def test_build_app_refuses_a_missing_or_wrong_member(tmp_path):
    from jaxgan.serving.app import build_app

    settings = {"image_latents": generation.image_latents, "slerp": generation.slerp,
                "buckets": (1,)}  # fmt: skip
    population_run, single_run, waiting = tmp_path / "pop", tmp_path / "one", tmp_path / "wait"
    write_population_checkpoint(population_run, population_config(), STEP)
    write_checkpoint(single_run, tiny_config(conditional=False, ema=False), STEP)
    waiting.mkdir()  # A population's run that has not saved a checkpoint yet.
    shutil.copy(population_run / "config.json", waiting / "config.json")
    for workdir, member, watch, needle in (
        (population_run, None, False, r"member=0\.\.1 \(--member .*got None"),
        (population_run, 2, False, "got 2"),
        (single_run, 0, False, "not a population"),
        (waiting, None, True, r"member=0\.\.1 \(--member .*got None"),  # Not at each reload.
    ):
        with pytest.raises(ValueError, match=needle):
            build_app(str(workdir), member=member, watch=watch, **settings)
    app = build_app(str(waiting), member=1, watch=True, poll_seconds=60, **settings)
    try:
        assert app.state.holder.current is None  # Waiting for the first checkpoint.
    finally:
        app.state.holder.stop()


def test_serve_member_flag(tmp_path):
    stacked = write_population_checkpoint(tmp_path / "run", population_config(), STEP)
    with serve(tmp_path / "run", "--member=1", "--buckets=1,4", log_path=tmp_path / "log") as port:
        images, headers = fetch_npz(port, "/generate?n=4&seed=6&format=npz")
        assert headers["x-checkpoint-step"] == str(STEP)
        assert_images_of_member(images, stacked, 1, 6)
        assert json.loads(get(port, "/healthz")[2])["member"] == 1
    assert "Traceback" not in (tmp_path / "log").read_text()
    for flags, needle in (((), "got None"), (("--member=9",), "got 9")):
        result = subprocess.run(
            [sys.executable, "-m", "experiments.serve", f"--workdir={tmp_path / 'run'}", *flags],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "population of 2 GANs" in result.stderr and needle in result.stderr
