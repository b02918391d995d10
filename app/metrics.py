"""Prometheus metrics, one registry per app so several apps (tests) never share series.

Label values are bounded: routes are templates (``/generators/{name}``, or
``unmatched``), generators are the loaded set, reasons are error codes, provenance
findings are closed sets (never a name read from an upload's metadata).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from dif.provenance import Provenance

# `_created` series double the exposition size and no dashboard uses them.
disable_created_metrics()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = CONTENT_TYPE_LATEST
DECLARATION_SOURCES = ("c2pa", "xmp", "png", "exif")
PROVENANCE_PARTS = ("c2pa", "metadata")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter("dif_http_requests", "HTTP requests answered, by route template and status.",
                                ["route", "method", "status"], registry=r)
        self.request_latency = Histogram("dif_http_request_duration_seconds",
                                         "Time from request start to the end of the response.",
                                         ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_progress = Gauge("dif_http_requests_in_progress", "HTTP requests being handled now.", registry=r)
        self.queue_wait = Histogram("dif_queue_wait_seconds", "Time an image waited in the queue for a batch.",
                                    buckets=FAST_BUCKETS, registry=r)
        self.batch_size = Histogram("dif_batch_size_images", "Images per forward pass.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("dif_inference_duration_seconds",
                                   "One batch forward pass: residuals plus scoring against every generator.",
                                   buckets=FAST_BUCKETS, registry=r)
        self.preprocess = Histogram("dif_preprocess_duration_seconds", "Per-image work before the queue.",
                                    ["stage"], buckets=FAST_BUCKETS, registry=r)
        self.queue_depth = Gauge("dif_queue_depth_images", "Images waiting for a batch.", registry=r)
        self.in_flight = Gauge("dif_images_in_flight", "Admitted images not yet answered (bounded by "
                               "DIF_QUEUE_CAPACITY).", registry=r)
        self.generator_info = Gauge("dif_generator_info", "Loaded generators (value 1).",
                                    ["generator", "extractor", "crop_size"], registry=r)
        self.generators_loaded = Gauge("dif_generators_loaded", "Number of loaded generators.", registry=r)
        self.ready = Gauge("dif_ready", "1 when the service accepts detections.", registry=r)
        self.detections = Counter("dif_detections", "Images scored, by generator and verdict.",
                                  ["generator", "verdict"], registry=r)
        self.images = Counter("dif_images", "Images scored, by overall verdict.", ["verdict"], registry=r)
        self.rejections = Counter("dif_rejections", "Requests refused before or instead of scoring.",
                                  ["reason"], registry=r)
        self.decode_failures = Counter("dif_decode_failures", "Uploads that could not be used, by reason.",
                                       ["reason"], registry=r)
        self.batch_failures = Counter("dif_batch_failures", "Forward passes that raised.", registry=r)
        self.worker_restarts = Counter("dif_batcher_restarts", "Times the batcher worker crashed and was "
                                       "restarted.", registry=r)
        self.reloads = Counter("dif_reloads", "Fingerprint set reloads.", ["result"], registry=r)
        # Provenance labels are closed sets: never a generator, signer or claim generator name
        # (attacker-written strings would multiply the series without bound).
        self.provenance_images = Counter(
            "dif_provenance_images", "Images whose declared provenance was read, by C2PA manifest state, signer "
            "trust and whether anything declares them AI-generated.", ["c2pa", "trust", "declared_ai"], registry=r)
        self.provenance_declared = Counter(
            "dif_provenance_declared", "Images declared AI-generated, by where the declaration was read and whether "
            "a valid C2PA manifest carries it.", ["source", "validated"], registry=r)
        self.provenance_decisive = Counter(
            "dif_provenance_decisive", "Images a valid C2PA AI declaration by a trusted signer made fake, by what "
            "the fingerprints alone said.", ["fingerprint_verdict"], registry=r)
        self.provenance_errors = Counter(
            "dif_provenance_errors", "Provenance readings that ended in an error finding (hostile or broken "
            "files).", ["part"], registry=r)
        # Zero series from the start, so a rate over them reads 0 (not "no data") until the first one.
        for verdict in ("fake", "inconclusive", "real"):
            self.provenance_decisive.labels(fingerprint_verdict=verdict)
        for part in PROVENANCE_PARTS:
            self.provenance_errors.labels(part=part)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_provenance(self, found: Provenance) -> None:
        """Count one image's provenance reading (the decisive count waits for its verdict)."""
        c2pa = found.c2pa
        self.provenance_images.labels(c2pa=c2pa.state, trust=c2pa.trust or "none",
                                      declared_ai=_flag(found.declared_ai)).inc()
        if found.declared_ai:
            source = found.declared_by if found.declared_by in DECLARATION_SOURCES else "other"
            self.provenance_declared.labels(source=source, validated=_flag(found.validated)).inc()
        if c2pa.state == "invalid" and c2pa.error:
            self.provenance_errors.labels(part="c2pa").inc()
        if found.metadata.error:
            self.provenance_errors.labels(part="metadata").inc()

    def set_generators(self, names: list[str], extractor: str, crop_size: int) -> None:
        # Old series are cleared so a reload that drops a generator stops reporting it.
        self.generator_info.clear()
        for name in names:
            self.generator_info.labels(generator=name, extractor=extractor, crop_size=str(crop_size)).set(1)
        self.generators_loaded.set(len(names))


def _flag(value: bool) -> str:
    return "true" if value else "false"
