"""The decision service's command line.

    python -m decisions serve [--port 8060] [--pg-schema public] [--redis-prefix ""]
                              [--timeout-ms 50] [--degraded-mode review|approve-and-flag]
    python -m decisions keys create --client NAME [--rate-limit 2000]   # prints the key once
    python -m decisions keys revoke --client NAME
    python -m decisions keys list

Reads the settings (fraudops.settings: FEATURE_STORE_*, KAFKA_*, POSTGRES_*, MLFLOW_TRACKING_URI,
MODEL_URI, DECISIONS_PORT, DECISION_TIMEOUT_MS, DECISION_DEGRADED_MODE). `make decisions` runs
``serve`` in the foreground, `make decisions-bg` in the background (log .stack/logs/decisions.log).
"""

from __future__ import annotations

import argparse
import sys

from fraudops.settings import load_settings

GIL_SWITCH_SECONDS = 0.0005


def _positive(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number (got {text!r})") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0 (got {text!r})")
        return value

    return parse


def build_parser(settings) -> argparse.ArgumentParser:
    """The service's command line (sub-commands serve and keys); defaults from ``settings``."""
    from fraudops.cli import HelpFormatter, add_command
    from fraudops.contract.decisions import DEGRADED_MODES

    parser = argparse.ArgumentParser(prog="python -m decisions", description="the decision service",
                                     formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = add_command(commands, "serve", help="serve the decision API")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (keep the loopback default outside containers)")
    serve.add_argument("--port", type=int, default=settings.decisions_port,
                       help="port of the API (default: DECISIONS_PORT, here %(default)s)")
    serve.add_argument("--pg-schema", default="public", help="PostgreSQL schema of the service's tables")
    serve.add_argument("--redis-prefix", default="", help="prefix of the feature-store and Redis keys")
    serve.add_argument("--topic", default=None, help="decisions topic (default: KAFKA_DECISIONS_TOPIC)")
    serve.add_argument("--model-uri", default=None, help="the served model (default: MODEL_URI)")
    serve.add_argument("--model-refresh-seconds", type=_positive("--model-refresh-seconds"), default=10.0,
                       help="how often the registry is asked which version MODEL_URI names")
    serve.add_argument("--merchant-refresh-seconds", type=_positive("--merchant-refresh-seconds"), default=60.0,
                       help="how often the merchant risk snapshot is re-read")
    serve.add_argument("--label-delay", default="1h", help="as the streaming job's --label-delay")
    serve.add_argument("--timeout-ms", type=_positive("--timeout-ms"), default=None,
                       help="budget of one decision (default: DECISION_TIMEOUT_MS)")
    serve.add_argument("--degraded-mode", choices=DEGRADED_MODES, default=None,
                       help="answer when the feature store or the model is unavailable (default: DECISION_DEGRADED_MODE)")
    serve.add_argument("--max-batch", type=int, default=256, help="most requests decided in one batch, >= 1")
    serve.add_argument("--rules-reload-seconds", type=_positive("--rules-reload-seconds"), default=None,
                       help="how often published rule and list changes are picked up (default: RULES_RELOAD_SECONDS)")
    serve.add_argument("--review-budget", type=int, default=None,
                       help="at most this many reviews a UTC day (default: REVIEW_BUDGET_PER_DAY; 0: none)")
    keys = add_command(commands, "keys", help="API keys of the callers")
    keys.add_argument("action", choices=["create", "revoke", "list"],
                      help="create prints the new key once; revoke ends a client's key; list shows the clients")
    keys.add_argument("--client", default=None, help="the caller's name (create and revoke; default: none)")
    keys.add_argument("--rate-limit", type=_positive("--rate-limit"), default=2000.0,
                      help="requests/s the client may send (create)")
    keys.add_argument("--pg-schema", default="public", help="PostgreSQL schema of decision_clients")
    return parser


def parse_args(argv: list[str] | None, settings) -> argparse.Namespace:
    """The parsed command line, checked (argparse errors exit with status 2)."""
    from fraudops.modeling.registry import parse_label_delay

    parser = build_parser(settings)
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            args.label_delay_seconds = parse_label_delay(args.label_delay, "--label-delay")
        except ValueError as exc:
            parser.error(str(exc))
        if not 0 < args.port < 65536:
            parser.error(f"--port must be 1-65535 (got {args.port})")
        if args.max_batch < 1:
            parser.error(f"--max-batch must be >= 1 (got {args.max_batch})")
        if args.review_budget is not None and args.review_budget < 0:
            parser.error(f"--review-budget must be >= 0 (got {args.review_budget})")
    elif args.action in ("create", "revoke") and not args.client:
        parser.error(f"keys {args.action} needs --client NAME")
    return args


def serve(args, settings) -> int:
    import uvicorn

    from decisions.app import create_app
    from decisions.service import DecisionService, ServiceOptions
    from fraudops.logs import configure_logging

    configure_logging(settings.log_format)  # LOG_FORMAT=json: JSON lines with the transaction id
    # the event loop and the batch thread hand the GIL to each other for every request; a thread
    # that waits for it gets it after at most this long (CPython's default: 5 ms, a decision's budget)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    options = ServiceOptions(pg_schema=args.pg_schema, redis_prefix=args.redis_prefix, topic=args.topic,
                             model_uri=args.model_uri, model_refresh_seconds=args.model_refresh_seconds,
                             merchant_refresh_seconds=args.merchant_refresh_seconds,
                             label_delay_seconds=args.label_delay_seconds, timeout_ms=args.timeout_ms,
                             degraded_mode=args.degraded_mode, max_batch=args.max_batch,
                             rules_reload_seconds=args.rules_reload_seconds, review_budget_per_day=args.review_budget)
    try:
        service = DecisionService(settings, options).start()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - name the service that is missing
        print(f"error: the decision service could not start: {exc}. Start the stack with `make stack-up`.",
              file=sys.stderr)
        return 1
    print(f"decision service on http://{args.host}:{args.port}/v1/decisions (health: /health)", flush=True)
    try:
        # log_config=None: uvicorn's own lines go through the root handler (LOG_FORMAT)
        uvicorn.run(create_app(service), host=args.host, port=args.port, access_log=False, log_level="warning",
                    loop="uvloop", http="httptools", log_config=None)
    finally:
        service.stop()
    return 0


def keys(args, settings) -> int:
    from decisions.auth import create_client, revoke_client
    from fraudops.db import connect

    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('search_path', %s, false)", (args.pg_schema,))
        if args.action == "create":
            print(create_client(conn, args.client, args.rate_limit))
        elif args.action == "revoke":
            if not revoke_client(conn, args.client):
                print(f"error: no active key for --client {args.client!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.client}")
        else:
            with conn.cursor() as cur:
                cur.execute("SELECT client_name, rate_limit_per_s, created_at, revoked_at FROM decision_clients "
                            "ORDER BY client_name")
                for name, rate, created, revoked in cur.fetchall():
                    print(f"{name}\t{rate:g}/s\tcreated {created:%Y-%m-%d %H:%M}\t"
                          f"{'revoked ' + format(revoked, '%Y-%m-%d %H:%M') if revoked else 'active'}")
    finally:
        conn.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    args = parse_args(argv, settings)
    return serve(args, settings) if args.command == "serve" else keys(args, settings)


if __name__ == "__main__":
    raise SystemExit(main())
