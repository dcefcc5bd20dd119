"""The analyst portal's Prometheus metrics (``fraudops_portal_``), served on ``GET /metrics``.

  requests_total{method,route,status}   HTTP requests by route template (``/alerts/{transaction_id}``,
                                        never the raw path: the label set stays bounded)
  request_seconds{route}                histogram: request to the response's first byte (a live
                                        event stream counts until its headers)
  reviews_total{decision,result}        analyst reviews (confirmed / false_positive / escalated;
                                        recorded, or already: the same review again)
  logins_total{outcome}                 logins: success, failure, throttled

``/metrics`` needs no login, like ``/healthz``: it holds counts only, and the portal listens on
127.0.0.1 unless told otherwise (a container publishes it to Prometheus alone).
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

PREFIX = "fraudops_portal_"
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(PREFIX + "requests", "HTTP requests by method, route template and status",
                   ["method", "route", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram(PREFIX + "request_seconds", "request to the response's first byte, by route template",
                            ["route"], buckets=REQUEST_BUCKETS, registry=REGISTRY)
REVIEWS = Counter(PREFIX + "reviews", "analyst reviews by decision and result", ["decision", "result"],
                  registry=REGISTRY)
LOGINS = Counter(PREFIX + "logins", "login attempts by outcome", ["outcome"], registry=REGISTRY)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def exposition() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)


def route_of(scope: dict) -> str:
    """The matched route's template, or ``unmatched`` (a 404's raw path never becomes a label)."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestMetrics:
    """Pure ASGI middleware counting each HTTP request (safe for event streams: it only watches
    the response's start)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        seen = {"status": 500}

        async def watching_send(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                REQUEST_SECONDS.labels(route=route_of(scope)).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            REQUESTS.labels(method=scope.get("method", ""), route=route_of(scope), status=str(seen["status"])).inc()
