"""Command line of the analyst portal.

Reads: the settings (PORTAL_PORT, PostgreSQL, MLFLOW_TRACKING_URI); a password on stdin or at a
prompt. Writes: ``<pg-schema>``.portal_users (add-user).

Run:
    python -m portal serve [--host 127.0.0.1] [--port 8050] [--pg-schema public]
    python -m portal add-user alice --role analyst           # asks for the password twice
    printf '%s\\n' "$PASSWORD" | python -m portal add-user bob --role viewer   # password from stdin
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from portal.users import ROLES, UserError, save_user


def read_password(stdin=sys.stdin) -> str:
    """The new password: from a prompt (twice) on a terminal, else the first line of stdin."""
    if stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UserError("password: the two entries differ")
        return first
    return stdin.readline().rstrip("\r\n")


def add_user(settings, schema: str, name: str, role: str, password: str) -> str:
    from portal.db import connect_on_schema

    conn = connect_on_schema(settings, schema)
    try:
        created = save_user(conn, name, role, password)
    finally:
        conn.close()
    return f"user {name} ({role}) {'created' if created else 'updated: new role and password'}"


def serve(settings, host: str, port: int, schema: str) -> None:
    import uvicorn

    from portal.app import create_app
    from portal.web import PortalConfig

    app = create_app(settings, PortalConfig(pg_schema=schema))
    print(f"analyst portal on http://{host}:{port}/ (schema {schema})", flush=True)
    # log_config=None: uvicorn's own lines go through the root handler (LOG_FORMAT)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False,
                timeout_graceful_shutdown=3, log_config=None)


def build_parser() -> argparse.ArgumentParser:
    """The portal's command line: ``serve`` and ``add-user``."""
    from fraudops.cli import HelpFormatter, add_command

    parser = argparse.ArgumentParser(prog="python -m portal", description="the analyst portal",
                                     formatter_class=HelpFormatter,
                                     epilog=__doc__.split("Run:\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)
    run = add_command(commands, "serve", help="run the web app (foreground)")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (keep the loopback default)")
    run.add_argument("--port", type=int, default=None, help="default: PORTAL_PORT (8050)")
    run.add_argument("--pg-schema", default="public", help="PostgreSQL schema of the tables the portal reads")
    user = add_command(commands, "add-user", help="create a user or set its role and password")
    user.add_argument("name", help="the user's login name")
    user.add_argument("--role", required=True, choices=ROLES, help="what the user may do")
    user.add_argument("--pg-schema", default="public", help="PostgreSQL schema of portal_users")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fraudops.logs import configure_logging
    from fraudops.settings import load_settings

    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_format)  # LOG_FORMAT=json: JSON lines
        if args.command == "serve":
            serve(settings, args.host, args.port or settings.portal_port, args.pg_schema)
            return 0
        print(add_user(settings, args.pg_schema, args.name, args.role, read_password()))
        return 0
    except (UserError, ValueError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
