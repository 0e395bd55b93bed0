"""The server's Prometheus metrics, in a registry of its own (two apps in one process do not share counts).

Endpoints are labelled by their route template (``/predictions/{model}``),
never by the raw path, so a client cannot grow the label set.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("squeezenet_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "code"], registry=self.registry)
        self.errors = Counter("squeezenet_request_errors", "requests answered with a 4xx or 5xx status",
                              ["endpoint", "code"], registry=self.registry)
        self.latency = Histogram("squeezenet_request_seconds", "time from request to answer",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("squeezenet_images", "images classified", registry=self.registry)
        self.batch_size = Histogram("squeezenet_batch_size", "images per forward pass",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.inference = Histogram("squeezenet_inference_seconds", "time of one forward pass",
                                   buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_progress = Gauge("squeezenet_requests_in_progress", "requests being answered",
                                 registry=self.registry)
        self.queue_depth = Gauge("squeezenet_queue_depth", "images waiting for a forward pass",
                                 registry=self.registry)

    def answered(self, endpoint: str, code: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(code)).inc()
        if code >= 400:
            self.errors.labels(endpoint, str(code)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def batch(self, size: int, seconds: float) -> None:
        self.images.inc(size)
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
