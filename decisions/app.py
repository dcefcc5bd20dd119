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
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from decisions.engine import Pending
from fraudops.contract.messages import MAX_MESSAGE_BYTES, validate_message

AFTER_TAKEN_WAIT_SECONDS = 10.0  # a batch that holds the request answers it; this bounds a hang


def create_app(service) -> FastAPI:
    """The ASGI app over a started decisions.service.DecisionService."""
    app = FastAPI(title="fraud-detection-mlops decisions", version="1")

    def refuse(request: Request, status: int, reason: str, client: str | None = None, detail: str = ""):
        service.refusals.refused(reason, client, request.client.host if request.client else None, request.url.path)
        body = {"error": reason}
        if detail:
            body["detail"] = detail
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

    @app.post("/v1/decisions")
    async def post_decision(request: Request):
        received = time.perf_counter()
        client = caller(request)
        if client is None:
            return refuse(request, 401, "unauthenticated", detail="send a valid API key "
                          "(Authorization: Bearer <key>); create one: python -m decisions keys create --client NAME")
        if not client.allow(time.monotonic()):
            return refuse(request, 429, "rate_limited", client.name,
                          f"over {client.rate_limit_per_s:g} requests/s for client {client.name}")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_MESSAGE_BYTES):
            return refuse(request, 413, "oversized_message", client.name, f"at most {MAX_MESSAGE_BYTES} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_MESSAGE_BYTES:
                return refuse(request, 413, "oversized_message", client.name, f"at most {MAX_MESSAGE_BYTES} bytes")
        record, reason = validate_message(body)
        if reason is not None:
            return JSONResponse({"error": "invalid_transaction", "reason": reason}, status_code=422)
        return await _decide(body, record, received)

    async def _decide(body: bytes, record: dict, received: float):
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
        return JSONResponse(pending.result, status_code=pending.status)

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
