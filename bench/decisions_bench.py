"""Benchmark of the decision service (decisions/, ``POST /v1/decisions``) as users run it, under
open-loop load of live transactions of a materialized history's customers.

Reads:  the simulator (a history of ``customers`` card holders and their live transactions after
        it, simulator.generator), the MLflow registry (the run's Production model), the local
        stack (`make stack-up`).
Writes: its own PostgreSQL schema, feature-store prefix and topics (transactions, decisions, ...;
        removed afterwards), logs under bench/results/logs/, bench/results/decisions_<ts>.json;
        a full run (not --quick, --seconds >= 180) merges its keys into bench/RESULTS.json and
        its section into bench/RESULTS.md (the other keys and sections are kept).
Run:    .venv/bin/python -m bench.decisions_bench [--seconds 180] [--step-seconds 30] [--quick]
        [--clients N] [--model-name NAME] [--no-job] [--no-profile]
        (also part of `make bench`: bench.run --only decisions)

Set-up, as users run it: a Production model (bench_support.register_model, or --model-name);
the history (``history_days`` days, ending where its live stream starts) written to Parquet and
materialized into the feature store with pipelines.materialize (timed: materialize_rows_per_s);
the streaming job under spark-submit (bench_support.JobProcess) subscribed to the service's
decisions topic (it records every decided transaction); ``python -m decisions serve`` in its own
process (uvicorn, the default budget DECISION_TIMEOUT_MS) and a key from
``python -m decisions keys create``.

Load: open loop. Request k of a phase is sent at t0 + k / rate whatever the answers (no
coordinated omission: a slow answer delays nothing), by ``clients`` processes (asyncio + aiohttp,
uvloop), each holding at most ``max_inflight / clients`` requests in flight (a request due while
its process is at the bound is not sent: counted ``not_sent``). One Python process cannot pace
1000 req/s and time its answers on 2 shared cores without lagging (measured: --clients 1 vs 2),
so rates above CLIENT_RATE_PER_PROCESS use several. Latency = send -> whole response read, per
request, client side; also the service's own ``latency_ms`` (arrival -> answer set) and the
client's lag behind its schedule. Phases: a 10 s warm-up at 200 req/s (not counted; the job's
recording of it is waited for), ``seconds`` at 200 and at 1000 req/s, then the step search
(STEP_RATES, ``step_seconds`` each, ascending until a step misses p99 <= 50 ms:
decision_max_rps = the highest step met), then (``profile``) 30 s at 1000 req/s with py-spy
sampling which thread holds the service's GIL (not counted), and the engine's steps timed
in process per batch size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.bench_support import BENCH_FRAUD_RATIO, RESULTS_DIR, ROOT, free_port, machine_load, run_id

TARGETS_MS = {200.0: 20.0, 1000.0: 50.0}  # p99 goal (ms) at each steady rate
STEP_P99_MS = 50.0  # decision_max_rps: highest offered rate with p99 <= this
RATES = (200.0, 1000.0)
STEP_RATES = (25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 600.0, 800.0, 1000.0, 1250.0, 1500.0, 2000.0)
WARMUP_RATE, WARMUP_SECONDS = 200.0, 10.0
PROFILE_RATE, PROFILE_SECONDS = 1000.0, 30.0
CLIENT_RATE_PER_PROCESS = 1000.0  # one load process per this many req/s (measured: --client-check)
TX_PER_CUSTOMER_DAY = 2.5  # simulator.generator: the live stream's event-time pace
SAMPLE_FIELDS = 6  # per request: scheduled (s after t0), lag (s), latency (s), status, degraded, server ms
SUMMARY_KEYS = ("decision_p50_ms_at_1000", "decision_p99_ms_at_1000", "decision_p99_ms_at_200",
                "decision_max_rps", "materialize_rows_per_s")
SECTION_BEGIN, SECTION_END = "<!-- decisions_bench -->", "<!-- /decisions_bench -->"
GIL_PATTERNS = (  # (label, substring of a py-spy frame): the service's time, by what holds the GIL
    ("engine.decide (batch thread)", "decide (decisions/engine.py"),
    ("  records lookup (mget)", "_answer_known (decisions/engine.py"),
    ("  parse (frame parser)", "_events (decisions/engine.py"),
    ("  stream_features", "stream_features (features/stream.py"),
    ("  model predict", "predict (fraudops/modeling"),
    ("  reasons (explain)", "alert_reasons_json"),
    ("  features_json", "features_json (streaming/scoring_pass.py"),
    ("  remember_events (store write)", "remember_events (features/stream.py"),
    ("  commit (records + Kafka produce)", "_commit (decisions/engine.py"),
    ("endpoint post_decision", "post_decision (decisions/app.py"),
    ("  validate_message", "validate_message (fraudops/contract/messages.py"),
    ("uvicorn / httptools protocol", "httptools_impl.py"),
    ("starlette / fastapi routing", "starlette/"),
    ("merchant snapshot refresh", "_keep_snapshot (decisions/service.py"),
    ("model registry poll", "model_server.py"),
    ("publisher thread", "_serve (decisions/publisher.py"),
)


# ---------------------------------------------------------------- pure helpers (tests/unit)

def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank, as bench.portal_bench)."""
    return ordered[min(len(ordered) - 1, max(0, int(math.ceil(q * len(ordered))) - 1))]


def latency_summary(values_ms) -> dict:
    """n, p50, p90, p99, p99.9, max and mean (ms, 2 decimals) of a list of milliseconds."""
    ordered = sorted(values_ms)
    if not ordered:
        return {"n": 0}
    return {"n": len(ordered), "p50": round(percentile(ordered, 0.5), 2), "p90": round(percentile(ordered, 0.9), 2),
            "p99": round(percentile(ordered, 0.99), 2), "p999": round(percentile(ordered, 0.999), 2),
            "max": round(ordered[-1], 2), "mean": round(statistics.fmean(ordered), 2)}


def clients_for(rate: float, per_process: float = CLIENT_RATE_PER_PROCESS) -> int:
    """Load processes for ``rate`` req/s (one per ``per_process``, at least one)."""
    return max(1, math.ceil(rate / per_process))


def send_offsets(index: int, workers: int, count: int, rate: float) -> list[float]:
    """Seconds after t0 at which process ``index`` of ``workers`` sends its ``count`` requests:
    the phase's k-th request goes at k / rate, the processes take every ``workers``-th in turn."""
    return [(index + workers * i) / rate for i in range(count)]


def live_days(messages: int, customers: int, margin: float = 1.15) -> float:
    """Event-time days that ``messages`` live transactions of ``customers`` card holders span
    (the simulator's pace), with a margin: the history ends that long before now, so that no live
    transaction lies after now (the contract refuses more than a day ahead)."""
    return messages / (customers * TX_PER_CUSTOMER_DAY) * margin + 0.05


def phase_summary(samples, rate: float, seconds: float) -> dict:
    """The client-side numbers of one phase from its per-request samples (rows of SAMPLE_FIELDS:
    scheduled offset s, lag s, latency s, HTTP status (0: no answer), degraded 0/1, server ms)."""
    answered = [s for s in samples if s[3] != 0]
    ok = [s for s in answered if s[3] == 200]
    statuses: dict[str, int] = {}
    for s in samples:
        statuses[str(int(s[3]))] = statuses.get(str(int(s[3])), 0) + 1
    server = [s[5] for s in ok if not math.isnan(s[5])]
    return {"offered_rps": rate, "seconds": seconds, "requests": len(samples),
            "achieved_rps": round(len(answered) / seconds, 1) if seconds else None,
            "answered": len(answered), "ok": len(ok), "errors": len(samples) - len(ok),
            "degraded": int(sum(s[4] for s in ok)), "statuses": statuses,
            "latency_ms": latency_summary([s[2] * 1000.0 for s in answered]),
            "latency_from_schedule_ms": latency_summary([(s[1] + s[2]) * 1000.0 for s in answered]),
            "server_latency_ms": latency_summary(server),
            "client_lag_ms": latency_summary([s[1] * 1000.0 for s in samples])}


def step_met(phase: dict, p99_ms: float = STEP_P99_MS) -> bool:
    """A step of the search is met: p99 <= ``p99_ms``, every request sent and answered 200, and
    at least 95% of the offered rate answered."""
    p99 = phase.get("latency_ms", {}).get("p99")
    return (p99 is not None and p99 <= p99_ms and phase.get("errors", 1) == 0 and phase.get("not_sent", 0) == 0
            and phase.get("achieved_rps", 0) >= 0.95 * phase["offered_rps"])


def max_rate_met(steps: list[dict]) -> float | None:
    """decision_max_rps: the highest offered rate of the ascending steps before the first missed
    one; 0.0 when the first step is missed, None when no step ran."""
    best = 0.0 if steps else None
    for step in steps:
        if not step.get("met"):
            break
        best = step["offered_rps"]
    return best


def gil_shares(raw: str, duration_s: float, rate_hz: float,
               patterns: tuple[tuple[str, str], ...] = GIL_PATTERNS) -> dict:
    """From ``py-spy record --gil --threads --format raw`` output: the share of wall time each
    thread held the GIL, and the share of the samples under each pattern's frame."""
    threads: dict[str, int] = {}
    under = {label: 0 for label, _ in patterns}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        thread = re.sub(r"^thread \(\w+\): ?", "", stack.split(";", 1)[0]) or "?"
        threads[thread] = threads.get(thread, 0) + n
        for label, needle in patterns:
            if needle in stack:
                under[label] += n
    possible = duration_s * rate_hz
    return {"samples": total, "gil_held_share": round(total / possible, 3) if possible else None,
            "threads": {t: round(n / possible, 3) for t, n in sorted(threads.items(), key=lambda kv: -kv[1])},
            "frames_share_of_gil": {label: round(n / total, 3) if total else 0.0 for label, n in under.items()}}


def merge_results_json(existing: dict, keys: dict) -> dict:
    """bench/RESULTS.json with the decision keys set, every other key kept, in its order."""
    return {**existing, **keys}


def replace_section(markdown: str, section: str) -> str:
    """``markdown`` with the decisions section (between SECTION_BEGIN and SECTION_END) replaced
    by ``section``, or appended when there is none."""
    block = f"{SECTION_BEGIN}\n{section.strip()}\n{SECTION_END}\n"
    start, end = markdown.find(SECTION_BEGIN), markdown.find(SECTION_END)
    if start != -1 and end > start:
        return markdown[:start] + block + markdown[end + len(SECTION_END):].lstrip("\n")
    return markdown.rstrip("\n") + "\n\n" + block


def existing_section(markdown: str) -> str | None:
    """The decisions section of a RESULTS.md (None when it has none)."""
    start, end = markdown.find(SECTION_BEGIN), markdown.find(SECTION_END)
    return markdown[start + len(SECTION_BEGIN):end].strip() if start != -1 and end > start else None


# ---------------------------------------------------------------- the load processes

def _client_process(spec: dict, out_path: str, results) -> None:
    """One load process (spawned): its share of the phase's requests, paced; per-request
    samples to ``out_path`` (array of doubles), a summary dict on the ``results`` queue."""
    import asyncio

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    try:
        summary = asyncio.run(_client(spec, out_path))
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        summary = {"index": spec["index"], "error": f"{type(exc).__name__}: {exc}"}
    results.put(summary)


async def _client(spec: dict, out_path: str) -> dict:
    import asyncio

    import aiohttp

    index, workers, rate, t0 = spec["index"], spec["workers"], spec["rate"], spec["t0"]
    bodies = Path(spec["bodies"]).read_bytes().split(b"\n")[index::workers]
    bound = spec["inflight"]
    url = spec["url"] + "/v1/decisions"
    headers = {"Authorization": f"Bearer {spec['key']}", "Content-Type": "application/json"}
    samples = array("d")
    latency_re = re.compile(rb'"latency_ms":([0-9.eE+-]+)')
    state = {"inflight": 0, "not_sent": 0}
    exceptions: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=bound, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=spec["timeout_s"])) as session:
        async def touch():
            async with session.get(spec["url"] + "/health") as response:
                await response.read()

        await asyncio.gather(*(touch() for _ in range(spec["connections"])), return_exceptions=True)

        async def send(body: bytes, at: float) -> None:
            start = time.monotonic()
            status, degraded, server = 0, 0.0, float("nan")
            try:
                async with session.post(url, data=body) as response:
                    data = await response.read()
                    status = response.status
                if status == 200:
                    degraded = 1.0 if b'"degraded":true' in data else 0.0
                    found = latency_re.search(data)
                    if found:
                        server = float(found.group(1))
            except Exception as exc:  # noqa: BLE001 - counted: no answer
                exceptions[type(exc).__name__] = exceptions.get(type(exc).__name__, 0) + 1
            finally:
                state["inflight"] -= 1
            samples.extend((at - t0, start - at, time.monotonic() - start, float(status), degraded, server))

        pending: set = set()
        loop = asyncio.get_running_loop()
        cpu0 = time.process_time()
        wall0 = time.monotonic()
        for i, body in enumerate(bodies):
            at = t0 + (index + workers * i) / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if state["inflight"] >= bound:
                state["not_sent"] += 1
                continue
            state["inflight"] += 1
            task = loop.create_task(send(body, at))
            pending.add(task)
            task.add_done_callback(pending.discard)
        sending_cpu, sending_wall = time.process_time() - cpu0, time.monotonic() - wall0
        if pending:
            await asyncio.wait(set(pending), timeout=spec["timeout_s"] + 5)
    with open(out_path, "wb") as out:
        samples.tofile(out)
    return {"index": index, "requests": len(bodies), "sent": len(bodies) - state["not_sent"],
            "not_sent": state["not_sent"], "exceptions": exceptions,
            "cpu_share_while_sending": round(sending_cpu / sending_wall, 3) if sending_wall else None}


def session_cpu_seconds(session_id: int) -> float:
    """User + system CPU seconds of every process in session ``session_id`` (threads included)."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(") ", 1)[1].split()
            if int(stat[3]) == session_id:
                total += int(stat[11]) + int(stat[12])  # fields 14, 15: utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


class LoadSampler:
    """The 1-minute load average every ``interval`` s while a phase runs."""

    def __init__(self, interval: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._interval = interval
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> float | None:
        self._stop.set()
        return round(statistics.fmean(self.samples), 2) if self.samples else round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------- the service and its callers

class Service:
    """``python -m decisions serve`` in its own session, on a free port, for one namespace."""

    def __init__(self, ns, topic: str, model_name: str, log_path: Path, extra: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.argv = [sys.executable, "-m", "decisions", "serve", "--port", str(self.port),
                     "--pg-schema", ns.pg_schema, "--redis-prefix", ns.redis_prefix, "--topic", topic,
                     "--model-uri", f"models:/{model_name}/Production", *extra]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240.0) -> dict:
        import httpx

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                         start_new_session=True)
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the decision service exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                response = httpx.get(self.url + "/health", timeout=2)
                if response.status_code == 200:
                    return {"ready_after_s": round(time.monotonic() - started, 1), **response.json()}
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the decision service not ready after {timeout}s:\n{self.log_tail()}")

    def health(self) -> dict:
        import httpx

        return httpx.get(self.url + "/health", timeout=5).json()

    def cpu_seconds(self) -> float:
        return session_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def stop(self) -> int | None:
        import signal

        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def create_key(pg_schema: str, client: str) -> str:
    """A key from ``python -m decisions keys create`` (rate limit far above the bench's rates)."""
    done = subprocess.run([sys.executable, "-m", "decisions", "keys", "create", "--client", client,
                           "--rate-limit", "1000000", "--pg-schema", pg_schema],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip().splitlines()[-1]


class LiveTraffic:
    """Serialized live transactions of the history's customers (simulator.generator.LiveSimulator,
    the history's seed and customers, from just after its newest event), taken in order."""

    def __init__(self, seed: int, customers: int, start: datetime):
        from simulator.generator import LiveSimulator

        simulator = LiveSimulator(seed=seed, fraud_ratio=BENCH_FRAUD_RATIO, customers=customers, start=start)
        self._events = (e for e in simulator if e.kind == "transaction")
        self.taken = 0

    def take(self, n: int) -> list[bytes]:
        from itertools import islice

        from fraudops.contract.messages import serialize_message

        out = [serialize_message(event.message) for event in islice(self._events, n)]
        self.taken += len(out)
        return out


def run_phase(service: Service, key: str, traffic: LiveTraffic, rate: float, seconds: float, scratch: Path,
              clients: int | None = None, max_inflight: int = 256, job=None, label: str = "",
              during=None) -> dict:
    """``seconds`` of open-loop load at ``rate`` req/s; the client-side numbers, the service's
    and the job's CPU, the service's batch counts, the load average. ``during(t0)``: called in a
    thread once the processes are started (e.g. py-spy)."""
    import multiprocessing

    bodies = traffic.take(int(round(rate * seconds)))
    workers = clients or clients_for(rate)
    body_path = scratch / f"bodies-{label or int(rate)}.txt"
    body_path.write_bytes(b"\n".join(bodies))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    t0 = time.monotonic() + 3.0 + 0.5 * workers  # the processes start and open connections first
    per_process = max(1, math.ceil(max_inflight / workers))
    expected_inflight = rate * 0.02  # ~20 ms each
    specs = [{"index": i, "workers": workers, "rate": rate, "t0": t0, "bodies": str(body_path), "url": service.url,
              "key": key, "inflight": per_process, "timeout_s": 10.0,
              "connections": min(per_process, max(2, math.ceil(expected_inflight / workers) + 2))}
             for i in range(workers)]
    outs = [scratch / f"samples-{label or int(rate)}-{i}.bin" for i in range(workers)]
    health_before = service.health()
    processes = [context.Process(target=_client_process, args=(spec, str(out), queue), daemon=True)
                 for spec, out in zip(specs, outs, strict=True)]
    for process in processes:
        process.start()
    while time.monotonic() < t0:
        time.sleep(0.05)
    sampler = LoadSampler()
    cpu_before = (service.cpu_seconds(), session_cpu_seconds(job.proc.pid) if job and job.alive() else 0.0)
    wall_before = time.monotonic()
    helper = threading.Thread(target=during, args=(t0,), daemon=True) if during else None
    if helper:
        helper.start()
    summaries = [queue.get(timeout=seconds + 120) for _ in processes]
    wall = time.monotonic() - wall_before
    cpu_after = (service.cpu_seconds(), session_cpu_seconds(job.proc.pid) if job and job.alive() else 0.0)
    load = sampler.stop()
    for process in processes:
        process.join(30)
    if helper:
        helper.join(120)
    errors = [s["error"] for s in summaries if "error" in s]
    if errors:
        raise RuntimeError(f"load process failed: {errors[0]}")
    import numpy as np

    samples = np.concatenate([np.fromfile(out, dtype="float64").reshape(-1, SAMPLE_FIELDS) for out in outs])
    for out in [*outs, body_path]:
        out.unlink(missing_ok=True)
    result = phase_summary(samples.tolist(), rate, seconds)
    health_after = service.health()
    batches = health_after.get("batches", 0) - health_before.get("batches", 0)
    decided = health_after.get("decided", 0) - health_before.get("decided", 0)
    result.update({
        "not_sent": sum(s["not_sent"] for s in summaries),
        "client_processes": workers, "max_inflight": max_inflight,
        "client_cpu_share_while_sending": [s["cpu_share_while_sending"] for s in summaries],
        "client_exceptions": {k: v for s in summaries for k, v in s["exceptions"].items()},
        "service_cpu_cores": round((cpu_after[0] - cpu_before[0]) / wall, 2),
        "job_cpu_cores": round((cpu_after[1] - cpu_before[1]) / wall, 2) if job else None,
        "service_batches": batches, "service_decided": decided,
        "mean_batch_size": round(decided / batches, 2) if batches else None,
        "service_degraded": health_after.get("degraded", 0) - health_before.get("degraded", 0),
        "load_avg_during": load})
    result["errors"] += result["not_sent"]
    if label:
        result["label"] = label
    return result


STUB_SERVER = r"""
import asyncio, sys
from aiohttp import web
try:
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
except ImportError:
    pass
BODY = b'{"decision":"approve","degraded":false,"latency_ms":0.1}'
async def decide(request):
    await request.read()
    return web.Response(body=BODY, content_type="application/json")
async def health(request):
    return web.json_response({"status": "ok", "batches": 0, "decided": 0, "degraded": 0})
app = web.Application()
app.add_routes([web.post("/v1/decisions", decide), web.get("/health", health)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


class StubServer(Service):
    """A fixed answer to every request (aiohttp, one process): what the load processes can pace
    and time on this machine when the server costs next to nothing."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.argv = [sys.executable, "-c", STUB_SERVER, str(self.port)]
        self.proc = None


def client_check(scratch: Path, rates=(1000.0, 2000.0), clients=(1, 2), seconds: float = 15.0) -> list[dict]:
    """The load processes against StubServer: client lag and CPU per rate and process count."""
    from itertools import count

    class Bodies:
        def __init__(self):
            self._ids = count()

        def take(self, n):
            return [b'{"transaction_id":"TXN_STUB_%d"}' % next(self._ids) for _ in range(n)]

    stub = StubServer(RESULTS_DIR / "logs" / "decisions-stub.log")
    (RESULTS_DIR / "logs").mkdir(parents=True, exist_ok=True)
    stub.start(timeout=60)
    out = []
    try:
        bodies = Bodies()
        for rate in rates:
            for workers in clients:
                phase = run_phase(stub, "stub", bodies, rate, seconds, scratch, workers, 256, None,
                                  f"stub{int(rate)}x{workers}")
                out.append({k: phase[k] for k in ("offered_rps", "client_processes", "achieved_rps", "errors",
                                                  "latency_ms", "client_lag_ms", "client_cpu_share_while_sending",
                                                  "service_cpu_cores", "load_avg_during")})
    finally:
        stub.stop()
    return out


# ---------------------------------------------------------------- profiling

def py_spy_binary(explicit: str | None = None) -> str | None:
    """py-spy (PY_SPY, --py-spy, PATH or next to this Python), None when not installed."""
    for candidate in (explicit, os.environ.get("PY_SPY"), shutil.which("py-spy"),
                      str(Path(sys.executable).parent / "py-spy")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def py_spy_gil(binary: str, pid: int, seconds: float, out: Path, rate_hz: int = 100) -> dict:
    """``seconds`` of py-spy sampling the thread that holds the service's GIL (non-blocking)."""
    done = subprocess.run([binary, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate",
                           str(rate_hz), "--format", "raw", "--output", str(out), "--threads", "--gil",
                           "--nonblocking"], capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not out.exists():
        return {"error": (done.stderr or done.stdout)[-500:]}
    result = gil_shares(out.read_text(), seconds, rate_hz)
    result["raw"] = str(out)
    return result


ENGINE_STEPS = (  # (step, object holding it, attribute): wrapped while profile_engine runs
    ("records_lookup", "engine", "_answer_known"),
    ("parse_frame", "engine", "_events"),
    ("stream_features", "decisions.engine", "stream_feature_columns"),
    ("featured_frame", "decisions.engine", "featured_frame"),
    ("score (predict, policy, rules, JSON, reasons)", "engine", "_score"),
    ("  rules", "engine", "_apply_rules"),
    ("  features_json", "streaming.scoring_pass", "features_json"),
    ("  reasons (explain)", "decisions.engine", "alert_reasons_json"),
    ("remember_events (store write)", "decisions.engine", "remember_events"),
    ("commit (records, Kafka produce, answers)", "engine", "_commit"),
)


def _wrapped(function, step: str, spent: dict):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[step] = spent.get(step, 0.0) + (time.perf_counter() - started) * 1000.0

    return timed


def profile_engine(settings, ns, topic: str, model_name: str, traffic: LiveTraffic,
                   batch_sizes=(1, 4, 16, 64), repeats: int = 20, timeout: float = 120.0) -> dict:
    """The service's own engine (decisions.service.DecisionService started in this process, no
    HTTP, no keys) deciding batches of fresh live transactions through ``engine.decide``, with
    its steps (ENGINE_STEPS, those that exist) timed by wrapping them: ms per batch, median of
    ``repeats`` after one not counted, per batch size; and the endpoint's validate_message."""
    import importlib

    from decisions.engine import Pending
    from decisions.service import DecisionService, ServiceOptions
    from fraudops.contract.messages import validate_message

    service = DecisionService(settings, ServiceOptions(pg_schema=ns.pg_schema, redis_prefix=ns.redis_prefix,
                                                       topic=topic, model_uri=f"models:/{model_name}/Production",
                                                       require_keys=False)).start()
    restore = []
    out: dict = {"repeats": repeats, "batch_sizes": {}}
    try:
        deadline = time.monotonic() + timeout
        while (service.engine.version is None or service.snapshot_at is None) and time.monotonic() < deadline:
            time.sleep(0.2)
        if service.engine.version is None:
            return {"error": f"no model loaded after {timeout}s"}
        engine = service.engine
        spent: dict[str, float] = {}
        for step, owner_name, attribute in ENGINE_STEPS:
            owner = engine if owner_name == "engine" else importlib.import_module(owner_name)
            if hasattr(owner, attribute):
                restore.append((owner, attribute, owner.__dict__.get(attribute, None), owner_name == "engine"))
                setattr(owner, attribute, _wrapped(getattr(owner, attribute), step, spent))
        validate_ms = []
        for size in batch_sizes:
            timings: dict[str, list[float]] = {}
            totals = []
            for repeat in range(repeats + 1):
                batch = []
                for body in traffic.take(size):
                    started = time.perf_counter()
                    record, _reason = validate_message(body)
                    validate_ms.append((time.perf_counter() - started) * 1000.0)
                    now = time.perf_counter()
                    batch.append(Pending(body, record, now, now + 60.0))
                spent.clear()
                started = time.perf_counter()
                engine.decide(batch)
                total = (time.perf_counter() - started) * 1000.0
                if repeat == 0:
                    continue
                totals.append(total)
                for step, ms in spent.items():
                    timings.setdefault(step, []).append(ms)
            median = statistics.median(totals)
            out["batch_sizes"][str(size)] = {
                "ms_per_batch": round(median, 2), "ms_per_request": round(median / size, 3),
                "requests_per_s_one_thread": round(1000.0 * size / median),
                "steps_ms": {step: round(statistics.median(v + [0.0] * (len(totals) - len(v))), 2)
                             for step, v in timings.items()}}
        out["validate_message_ms_median"] = round(statistics.median(validate_ms), 3)
        out["degraded_during_profile"] = engine.stats.get("degraded")
    finally:
        for owner, attribute, previous, on_instance in restore:
            if on_instance:
                delattr(owner, attribute)  # back to the class's method
            else:
                setattr(owner, attribute, previous)
        service.stop()
    return out


# ---------------------------------------------------------------- the run

def prepare_history(scratch: Path, customers: int, days: int, live_span_days: float, seed: int):
    """The history (``days`` days ending ``live_span_days`` before now) as Parquet; returns its
    path, its row count and the live stream's start (1 ms after its newest event)."""
    from simulator.generator import generate_history

    start = datetime.now(UTC) - timedelta(days=days + live_span_days)
    history = generate_history(days=days, customers=customers, fraud_ratio=BENCH_FRAUD_RATIO, seed=seed,
                               start=start)
    path = scratch / "decisions-history.parquet"
    history.to_parquet(path, index=False)
    newest = history["transaction_time"].max().to_pydatetime()
    return path, len(history), int(history["user_id"].nunique()), newest + timedelta(milliseconds=1)


def run(settings, scratch: Path, seconds: float = 180.0, rates: tuple[float, ...] = RATES,
        step_rates: tuple[float, ...] = STEP_RATES, step_seconds: float = 30.0, customers: int = 20_000,
        history_days: int = 14, seed: int = 21, clients: int | None = None, max_inflight: int = 256,
        with_job: bool = True, profile: bool = True, py_spy: str | None = None, check_clients: bool = True,
        model=None) -> dict:
    """The set-up and the phases of the module docstring; returns the results (``summary``:
    the RESULTS.json keys)."""
    from bench.bench_streaming import _class_data_archive
    from bench.bench_support import (
        JobProcess,
        create_namespace,
        drop_namespace,
        register_model,
        wait_for_rows,
    )
    from fraudops.kafka_io import delete_topics, ensure_topics
    from pipelines.materialize import materialize

    model = model or register_model(settings, f"bench-fraud-detector-{run_id()}")
    name = run_id()
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result: dict = {"model": {"name": model.name, "version": model.version}, "customers": customers,
                    "history_days": history_days, "seconds": seconds, "step_seconds": step_seconds,
                    "timeout_ms": settings.decision_timeout_ms, "degraded_mode": settings.decision_degraded_mode,
                    "cpus": os.cpu_count(), "load_start": machine_load(), "phases": [], "steps": []}
    live_total = int(WARMUP_RATE * WARMUP_SECONDS + sum(rates) * seconds + sum(step_rates) * step_seconds
                     + (PROFILE_RATE * PROFILE_SECONDS + 64 * 25 * 4 if profile else 0))
    span = live_days(live_total, customers)
    started = time.perf_counter()
    path, rows, users, live_start = prepare_history(scratch, customers, history_days, span, seed)
    result["history"] = {"rows": rows, "users": users, "generate_seconds": round(time.perf_counter() - started, 1),
                         "live_start": live_start.isoformat(), "live_span_days": round(span, 2)}
    if check_clients:
        result["client_check"] = client_check(scratch, seconds=10.0)
    ns = create_namespace(settings, name, 2, scratch)
    topic = f"bench-decisions-{name}"
    ensure_topics(settings, {topic: 2})
    job = service = None
    try:
        load = machine_load()
        done = materialize("parquet", "91d", path=path, redis_prefix=ns.redis_prefix, restart=True, progress=False,
                           settings=settings)
        result["materialize"] = {"events": done.events, "users": done.users, "seconds": round(done.seconds, 2),
                                 "rows_per_s": round(done.events / done.seconds) if done.seconds else None,
                                 "load_before": load["load_1m"], "load_after": machine_load()["load_1m"]}
        if with_job:
            _class_data_archive()
            job = JobProcess.build(ns, model.name, logs / f"decisions-job-{name}.log",
                                   job_args=["--decisions-topic", topic])
            job.start()
            result["job_log"] = str(job.log_path)
        service = Service(ns, topic, model.name, logs / f"decisions-service-{name}.log")
        key = create_key(ns.pg_schema, f"bench-{name}")
        result["service"] = service.start()
        result["service_log"] = str(service.log_path)
        traffic = LiveTraffic(seed, customers, live_start)
        warm = run_phase(service, key, traffic, WARMUP_RATE, WARMUP_SECONDS, scratch, clients, max_inflight, job,
                         "warmup")
        result["warmup"] = warm
        if job is not None:  # the job is up and records what the service decided
            waited = time.monotonic()
            wait_for_rows(settings, ns, warm["ok"], job, timeout=600)
            result["job_recorded_warmup_after_s"] = round(time.monotonic() - waited, 1)
        for rate in rates:
            print(f"decisions_bench: {seconds:g} s at {rate:g} req/s (load {machine_load()['load_1m']})", flush=True)
            result["phases"].append(run_phase(service, key, traffic, rate, seconds, scratch, clients, max_inflight, job))
        for rate in step_rates:
            print(f"decisions_bench: step {rate:g} req/s for {step_seconds:g} s", flush=True)
            step = run_phase(service, key, traffic, rate, step_seconds, scratch, clients, max_inflight, job,
                             f"step{int(rate)}")
            step["met"] = step_met(step)
            result["steps"].append(step)
            if not step["met"]:
                break
        if job is not None:
            from bench.bench_support import committed_rows

            sent_ok = warm["ok"] + sum(p["ok"] for p in result["phases"] + result["steps"])
            deadline = time.monotonic() + 180
            while committed_rows(settings, ns) < sent_ok and time.monotonic() < deadline and job.alive():
                time.sleep(2)
            result["job"] = {"decided_sent": sent_ok, "recorded": committed_rows(settings, ns),
                             "alive": job.alive(), "peak_rss_mb": round(job.peak_rss_bytes / 2**20)}
        if profile:
            result["profile"] = _profile(settings, ns, topic, model.name, service, key, traffic, scratch, clients,
                                         max_inflight, job, py_spy, logs / f"decisions-pyspy-{name}.txt")
    except RuntimeError as exc:
        result["error"] = str(exc)[:3000]
    finally:
        if service is not None:
            result["service_exit_code"] = service.stop()
        if job is not None:
            result.setdefault("job", {})["exit_code"] = job.stop()
        drop_namespace(settings, ns)
        delete_topics(settings, [topic])
    result["load_end"] = machine_load()
    result["summary"] = summary(result)
    return result


def _profile(settings, ns, topic, model_name, service, key, traffic, scratch, clients, max_inflight, job, py_spy,
             raw_path: Path) -> dict:
    out: dict = {}
    binary = py_spy_binary(py_spy)
    seconds = PROFILE_SECONDS
    holder: dict = {}

    def sample(_t0):
        holder["py_spy"] = py_spy_gil(binary, service.proc.pid, seconds - 5, raw_path)

    if binary:
        print(f"decisions_bench: profile: {seconds:g} s at {PROFILE_RATE:g} req/s with py-spy", flush=True)
        phase = run_phase(service, key, traffic, PROFILE_RATE, seconds, scratch, clients, max_inflight, job,
                          "profile", during=sample)
        out["phase"] = {k: phase[k] for k in ("latency_ms", "server_latency_ms", "service_cpu_cores", "job_cpu_cores",
                                              "mean_batch_size", "degraded", "load_avg_during")}
        out["py_spy_gil"] = holder.get("py_spy")
    else:
        out["py_spy_gil"] = {"error": "py-spy not found (PY_SPY, --py-spy or PATH)"}
    try:
        out["engine_steps"] = profile_engine(settings, ns, topic, model_name, traffic)
    except Exception as exc:  # noqa: BLE001 - a diagnostic: the measured numbers stand without it
        out["engine_steps"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


# ---------------------------------------------------------------- results

def _phase_at(result: dict, rate: float) -> dict:
    return next((p for p in result.get("phases", []) if p.get("offered_rps") == rate), {})


def summary(result: dict) -> dict:
    """The bench/RESULTS.json keys of this part (None when not measured)."""
    at_1000, at_200 = _phase_at(result, 1000.0), _phase_at(result, 200.0)
    return {"decision_p50_ms_at_1000": at_1000.get("latency_ms", {}).get("p50"),
            "decision_p99_ms_at_1000": at_1000.get("latency_ms", {}).get("p99"),
            "decision_p99_ms_at_200": at_200.get("latency_ms", {}).get("p99"),
            "decision_max_rps": max_rate_met(result.get("steps", [])),
            "materialize_rows_per_s": result.get("materialize", {}).get("rows_per_s")}


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)


def section(result: dict) -> str:
    """The markdown section of bench/RESULTS.md (and of `make bench`'s report)."""
    numbers = result.get("summary") or summary(result)
    lines = ["## Decision service: POST /v1/decisions under open-loop load (bench.decisions_bench)", ""]
    hist, mat = result.get("history", {}), result.get("materialize", {})
    lines.append(f"Model {result.get('model', {}).get('name')} v{result.get('model', {}).get('version')}; "
                 f"{_fmt(hist.get('users'))} customers, {_fmt(hist.get('rows'))} history events materialized, live "
                 f"transactions of those customers; the streaming job running (local[2], subscribed to the decisions "
                 f"topic); one service process (uvicorn, budget {result.get('timeout_ms')} ms, degraded mode "
                 f"{result.get('degraded_mode')}); {result.get('cpus')} cores shared with other work. Latency = "
                 "client-side send -> response read; open loop (fixed send times). Steady phases "
                 f"{_fmt(result.get('seconds'))} s each, step search {_fmt(result.get('step_seconds'))} s per step.")
    if result.get("error"):
        lines += ["", f"**error**: {result['error'][:500]}"]
    lines += ["", "| key | goal | measured | status |", "|---|---|---|---|"]
    goals = {"decision_p50_ms_at_1000": None, "decision_p99_ms_at_1000": ("<=", TARGETS_MS[1000.0]),
             "decision_p99_ms_at_200": ("<=", TARGETS_MS[200.0]), "decision_max_rps": None,
             "materialize_rows_per_s": None}
    for key in SUMMARY_KEYS:
        goal, value = goals[key], numbers.get(key)
        status = "(reported)" if goal is None else "n/a" if value is None else ("met" if value <= goal[1] else "NOT met")
        lines.append(f"| {key} | {'' if goal is None else f'{goal[0]} {goal[1]:g}'} | {_fmt(value)} | {status} |")
    lines += ["", "| offered (req/s) | s | answered (req/s) | p50 (ms) | p99 (ms) | max (ms) | errors | degraded "
              "| service p99 (ms) | client lag p99 (ms) | mean batch | service CPU (cores) | job CPU (cores) "
              "| client procs (CPU share) | load |", "|" + "---|" * 15]
    for phase in [*result.get("phases", []), *result.get("steps", [])]:
        lat, srv, lag = phase.get("latency_ms", {}), phase.get("server_latency_ms", {}), phase.get("client_lag_ms", {})
        tag = " (step, met)" if phase.get("met") else " (step, missed)" if "met" in phase else ""
        lines.append(f"| {phase['offered_rps']:g}{tag} | {_fmt(phase.get('seconds'))} "
                     f"| {_fmt(phase.get('achieved_rps'))} | {_fmt(lat.get('p50'))} | {_fmt(lat.get('p99'))} "
                     f"| {_fmt(lat.get('max'))} | {_fmt(phase.get('errors'))} "
                     f"| {_fmt(phase.get('degraded'))} | {_fmt(srv.get('p99'))} | {_fmt(lag.get('p99'))} "
                     f"| {_fmt(phase.get('mean_batch_size'))} | {_fmt(phase.get('service_cpu_cores'))} "
                     f"| {_fmt(phase.get('job_cpu_cores'))} | {phase.get('client_processes')} "
                     f"({', '.join(_fmt(c) for c in phase.get('client_cpu_share_while_sending', []))}) "
                     f"| {_fmt(phase.get('load_avg_during'))} |")
    lines += ["", f"materialize: {_fmt(mat.get('events'))} events of {_fmt(mat.get('users'))} users in "
              f"{_fmt(mat.get('seconds'))} s = {_fmt(mat.get('rows_per_s'))} events/s (pipelines.materialize, "
              f"Parquet source, load {mat.get('load_before')})."]
    job = result.get("job") or {}
    if "recorded" in job:
        lines.append(f"The job recorded {_fmt(job['recorded'])} of the {_fmt(job['decided_sent'])} decided "
                     "transactions (decisions topic -> PostgreSQL) within 3 min of the last phase.")
    gil = (result.get("profile") or {}).get("py_spy_gil") or {}
    if gil.get("gil_held_share") is not None:
        top = ", ".join(f"{t} {s:.0%}" for t, s in list(gil["threads"].items())[:4])
        frames = ", ".join(f"{label.strip()} {s:.0%}" for label, s in gil["frames_share_of_gil"].items() if s >= 0.03)
        lines.append(f"Profile ({PROFILE_SECONDS:g} s at {PROFILE_RATE:g} req/s, py-spy --gil): the service's GIL "
                     f"held {gil['gil_held_share']:.0%} of the time; by thread: {top}; of the GIL time: {frames}.")
    steps = ((result.get("profile") or {}).get("engine_steps") or {}).get("batch_sizes") or {}
    if steps:
        lines.append("Engine steps in process (ms per batch, median): " + "; ".join(
            f"batch {size}: {s['ms_per_batch']} ms ({s['ms_per_request']} ms/request)" for size, s in steps.items())
            + ".")
    lines += limit_lines(result)
    if result.get("notes"):
        lines += ["", *result["notes"]]
    return "\n".join(lines) + "\n"


def limit_lines(result: dict) -> list[str]:
    """What the load processes can do (client check) and the engine's cost model, in words."""
    lines = []
    checks = result.get("client_check") or []
    if checks:
        lines.append("Load processes against a stub server (same client, server costing ~nothing): " + "; ".join(
            f"{c['offered_rps']:g} req/s x {c['client_processes']} proc: p99 {_fmt(c['latency_ms'].get('p99'))} ms, "
            f"lag p99 {_fmt(c['client_lag_ms'].get('p99'))} ms, CPU {c['client_cpu_share_while_sending']}"
            for c in checks) + ".")
    sizes = ((result.get("profile") or {}).get("engine_steps") or {}).get("batch_sizes") or {}
    if "1" in sizes and len(sizes) > 1:
        largest = max(sizes, key=int)
        fixed = sizes["1"]["ms_per_batch"]
        marginal = (sizes[largest]["ms_per_batch"] - fixed) / (int(largest) - 1)
        top = sorted(((ms, step.strip()) for step, ms in sizes["1"]["steps_ms"].items() if not step.startswith("  ")),
                     reverse=True)[:4]
        lines.append(f"Engine cost model (in process, one thread): a batch costs ~{fixed:.1f} ms fixed + "
                     f"~{marginal:.2f} ms per request (batch 1: " + ", ".join(f"{step} {ms:.1f}" for ms, step in top)
                     + " ms). A request waits for the batch in progress, then its own: at low rates latency is "
                     f"~1-2 batch costs (~{fixed:.0f}-{2 * fixed:.0f} ms); the batch thread saturates near "
                     f"{1000.0 / marginal:,.0f} req/s before the endpoint's own GIL time.")
    return lines


def markdown(results: dict) -> str:
    """The section of the `make bench` report ("" when the part did not run)."""
    part = results.get("decisions")
    if not isinstance(part, dict) or "phases" not in part:
        return ""
    return "\n" + SECTION_BEGIN + "\n" + section(part) + SECTION_END + "\n"


def write_committed(result: dict, folder: Path | None = None) -> None:
    """Merge this run's keys into bench/RESULTS.json and its section into bench/RESULTS.md."""
    folder = folder or Path(__file__).resolve().parent
    json_path, md_path = folder / "RESULTS.json", folder / "RESULTS.md"
    existing = json.loads(json_path.read_text()) if json_path.exists() else {}
    json_path.write_text(json.dumps(merge_results_json(existing, summary(result)), indent=2) + "\n")
    md_path.write_text(replace_section(md_path.read_text() if md_path.exists() else "", section(result)))


def carry_over(folder: Path, previous_json: dict, previous_md: str) -> None:
    """After bench.run rewrote RESULTS.json and RESULTS.md without this part: put back the
    decision keys and section of the previous files."""
    keys = {k: previous_json[k] for k in SUMMARY_KEYS if k in previous_json}
    json_path, md_path = folder / "RESULTS.json", folder / "RESULTS.md"
    if keys:
        json_path.write_text(json.dumps(merge_results_json(json.loads(json_path.read_text()), keys), indent=2) + "\n")
    old = existing_section(previous_md)
    if old and SECTION_BEGIN not in md_path.read_text():
        md_path.write_text(replace_section(md_path.read_text(), old))


def main(argv: list[str] | None = None) -> dict:
    import tempfile

    from fraudops.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="duration of each steady phase (200, 1000 req/s)")
    parser.add_argument("--step-seconds", type=float, default=30.0, help="duration of each step of the search")
    parser.add_argument("--rates", default="200,1000", help="steady rates (req/s, comma-separated)")
    parser.add_argument("--step-rates", default=",".join(f"{r:g}" for r in STEP_RATES))
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--history-days", type=int, default=14)
    parser.add_argument("--clients", type=int, default=None,
                        help=f"load processes (default: one per {CLIENT_RATE_PER_PROCESS:g} req/s)")
    parser.add_argument("--max-inflight", type=int, default=256, help="requests in flight at most (all processes)")
    parser.add_argument("--model-name", default=None, help="serve this registered model's Production version")
    parser.add_argument("--no-job", action="store_true", help="without the streaming job")
    parser.add_argument("--no-profile", action="store_true", help="without the profile phase")
    parser.add_argument("--py-spy", default=None, help="py-spy binary (default: PY_SPY or PATH)")
    parser.add_argument("--quick", action="store_true", help="10 s phases, 3 steps, small history: harness check")
    parser.add_argument("--no-write", action="store_true", help="do not merge into bench/RESULTS.{json,md}")
    parser.add_argument("--client-check", action="store_true",
                        help="only the load processes against a stub server (1 and 2 processes, 1000 and 2000 req/s)")
    args = parser.parse_args(argv)
    if args.client_check:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="bench-decisions-") as scratch:
            checked = client_check(Path(scratch), seconds=min(args.seconds, 15.0))
        print(json.dumps(checked, indent=2))
        return {"client_check": checked}
    settings = load_settings()
    model = None
    if args.model_name:
        from types import SimpleNamespace

        from fraudops.modeling.registry import configure_tracking, resolve_served_model

        configure_tracking(settings)
        model = SimpleNamespace(name=args.model_name, version=resolve_served_model(
            f"models:/{args.model_name}/Production").version)
    options = dict(seconds=args.seconds, rates=tuple(float(r) for r in args.rates.split(",") if r.strip()),
                   step_rates=tuple(float(r) for r in args.step_rates.split(",") if r.strip()),
                   step_seconds=args.step_seconds, customers=args.customers, history_days=args.history_days,
                   clients=args.clients, max_inflight=args.max_inflight, with_job=not args.no_job,
                   profile=not args.no_profile, py_spy=args.py_spy, check_clients=not args.quick, model=model)
    if args.quick:
        options.update(seconds=10.0, step_seconds=10.0, step_rates=(200.0, 600.0, 1000.0), customers=5_000,
                       history_days=7)
    with tempfile.TemporaryDirectory(prefix="bench-decisions-") as scratch:
        result = run(settings, Path(scratch), **options)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"decisions_{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not args.quick and not args.no_write and args.seconds >= 180 and "error" not in result:
        write_committed(result)
    print(section(result))
    print(json.dumps(result["summary"], indent=2))
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
