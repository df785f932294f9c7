"""The server's Prometheus metrics, in a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Request latencies from 1 ms (a rejected query) to 10 s (256 images on a busy CPU).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PASS_IMAGE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    """Requests by endpoint and status, their latency, images made, and the checkpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "jaxgan_serve_requests",
            "HTTP requests answered, by endpoint and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "jaxgan_serve_request_seconds",
            "Time from a request's arrival to its response.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "jaxgan_serve_images_generated",
            "Images generated (grids and walks).",
            registry=self.registry,
        )
        self.pass_images = Histogram(
            "jaxgan_serve_pass_images",
            "Images per generator pass (requests batched together).",
            buckets=PASS_IMAGE_BUCKETS,
            registry=self.registry,
        )
        self.pass_requests = Counter(
            "jaxgan_serve_pass_requests",
            "Requests served by generator passes.",
            registry=self.registry,
        )
        self.step = Gauge(
            "jaxgan_serve_checkpoint_step",
            "Training step of the checkpoint being served.",
            registry=self.registry,
        )
        self.reloads = Counter(
            "jaxgan_serve_reloads",
            "Checkpoint loads after the first, by result.",
            ["result"],
            registry=self.registry,
        )

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_pass(self, requests: int, images: int, seconds: float) -> None:
        del seconds  # Request latencies already cover the pass.
        self.images.inc(images)
        self.pass_images.observe(images)
        self.pass_requests.inc(requests)

    def text(self) -> bytes:
        """The exposition in Prometheus' text format."""
        return generate_latest(self.registry)
