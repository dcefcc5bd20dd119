"""The decision API (FastAPI): ``POST /v1/decisions``, ``GET /v1/decisions/{id}``, ``GET /health``.

``POST /v1/decisions`` takes one transaction in the message contract (the body a producer
would put on the transactions topic) with an API key (``Authorization: Bearer <key>`` or
``X-API-Key: <key>``) and answers::

    {"transaction_id": "TXN_1", "decision": "review", "score": 0.71,
     "thresholds": {"review": 0.42, "decline": 0.93}, "model_version": "3",
     "reasons": [{"feature": "amount", "value": 3500.0, "contribution": 1.2}, ...],
     "degraded": false, "degraded_reason": null, "decided_at": "...", "replayed": false,
     "latency_ms": 4.1}

Refusals (each logged and written to audit_log): 401 without a valid key, 429 over the
client's rate, 413 for a body over the contract's MAX_MESSAGE_BYTES, 422 for an invalid
transaction with the stream's quarantine reason (``{"error": "invalid_transaction",
"reason": "duplicate_key:amount"}``), 409 for a known transaction_id with another body.

``GET /metrics`` (no key: for Prometheus) serves decisions.metrics, counted here from each answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from decisions import metrics
from decisions.engine import Pending
from fraudops.contract.messages import MAX_MESSAGE_BYTES, validate_message

NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False}
AFTER_TAKEN_WAIT_SECONDS = 10.0  # a batch that holds the request answers it; this bounds a hang
log = logging.getLogger("decisions.app")


def create_app(service) -> FastAPI:
    """The ASGI app over a started decisions.service.DecisionService."""
    # FastAPI's own OpenTelemetry hooks ask the tracer, meter and logger providers on EVERY
    # request (py-spy at 200 req/s: 30% of the event loop's samples); the service exports its
    # own Prometheus metrics (decisions.metrics), so they are off
    app = FastAPI(title="fraud-detection-mlops decisions", version="1", telemetry=NO_TELEMETRY)

    def refusal(request: Request, status: int, reason: str, client: str | None = None,
                detail: str = "") -> tuple[int, dict]:
        service.refusals.refused(reason, client, request.client.host if request.client else None, request.url.path)
        body = {"error": reason}
        if detail:
            body["detail"] = detail
        return status, body

    def refuse(request: Request, status: int, reason: str, client: str | None = None, detail: str = ""):
        status, body = refusal(request, status, reason, client, detail)
        return JSONResponse(body, status_code=status)

    def caller(request: Request):
        key = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        return service.clients.client_of(key)

    @app.get("/health")
    async def health():
        body = service.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/metrics")
    async def prometheus_metrics():
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    @app.post("/v1/decisions")
    async def post_decision(request: Request):
        received = time.perf_counter()
        status, body = await _answer(request, received)
        metrics.observe_answer(status, body, time.perf_counter() - received)
        _log_answer(status, body)
        return JSONResponse(body, status_code=status)

    async def _answer(request: Request, received: float) -> tuple[int, dict]:
        client = caller(request)
        if client is None:
            return refusal(request, 401, "unauthenticated", detail="send a valid API key "
                           "(Authorization: Bearer <key>); create one: python -m decisions keys create --client NAME")
        if not client.allow(time.monotonic()):
            return refusal(request, 429, "rate_limited", client.name,
                           f"over {client.rate_limit_per_s:g} requests/s for client {client.name}")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_MESSAGE_BYTES):
            return refusal(request, 413, "oversized_message", client.name, f"at most {MAX_MESSAGE_BYTES} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_MESSAGE_BYTES:
                return refusal(request, 413, "oversized_message", client.name, f"at most {MAX_MESSAGE_BYTES} bytes")
        record, reason = validate_message(body)
        if reason is not None:
            log.info("invalid transaction refused: %s", reason,
                     extra={"transaction_id": _claimed_id(body), "status": 422, "reason": reason})
            return 422, {"error": "invalid_transaction", "reason": reason}
        return await _decide(body, record, received)

    async def _decide(body: bytes, record: dict, received: float) -> tuple[int, dict]:
        loop = asyncio.get_running_loop()
        answered = loop.create_future()

        def wake():
            loop.call_soon_threadsafe(lambda: answered.done() or answered.set_result(None))

        pending = Pending(body, record, received, received + service.timeout_s, notify=wake)
        service.batcher.submit(pending)
        try:
            await asyncio.wait_for(asyncio.shield(answered), max(0.0, pending.deadline - time.perf_counter()))
        except TimeoutError:
            if not service.batcher.abandon(pending):  # a batch holds it: its answer comes soon
                await asyncio.wait_for(answered, AFTER_TAKEN_WAIT_SECONDS)
        return pending.status, pending.result

    @app.get("/v1/decisions/{transaction_id}")
    async def get_decision(transaction_id: str, request: Request):
        client = caller(request)
        if client is None:
            return refuse(request, 401, "unauthenticated")
        stored = service.records.get_many([transaction_id]).get(transaction_id)
        if stored is None:
            return JSONResponse({"error": "not_found", "transaction_id": transaction_id}, status_code=404)
        return JSONResponse(stored.response)

    return app


def _claimed_id(body: bytes) -> str | None:
    """The transaction_id an invalid body claims, for its log line (None when there is none)."""
    try:
        claimed = json.loads(body).get("transaction_id")
    except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, nested too deep
        return None
    return claimed[:128] if isinstance(claimed, str) else None


def _log_answer(status: int, body: dict) -> None:
    """A line per degraded answer (warning), per decision at debug; with LOG_FORMAT=json the
    transaction id, status and reason are fields of their own."""
    if not body or body.get("decision") is None:
        return
    context = {"transaction_id": body.get("transaction_id"), "status": status,
               "reason": body.get("degraded_reason")}
    if body.get("degraded"):
        log.warning("degraded decision %s for %s: %s", body.get("decision"), body.get("transaction_id"),
                    body.get("degraded_reason"), extra=context)
    elif log.isEnabledFor(logging.DEBUG):
        log.debug("decision %s for %s", body.get("decision"), body.get("transaction_id"), extra=context)
