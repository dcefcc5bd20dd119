"""Rules and lists from the command line (the portal's rules pages do the same through rules.store).

    python -m rules check --expression 'amount > 2000.0 && user_new_country == 1.0'
    python -m rules save big_new_country --expression '...' --action review --priority 50 \\
        --actor alice --reason "ATO wave"                     # a new version, as a draft
    python -m rules backtest --rule big_new_country --days 30  # or --expression '...'
    python -m rules request publish big_new_country --actor alice --reason "backtested"
    python -m rules pending
    python -m rules approve 2 --actor bob --reason "four eyes" # a rule_approver other than alice
    python -m rules reject 2 --actor bob --reason "too many hits"
    python -m rules list                                       # rules, newest versions and live ones
    python -m rules history big_new_country
    python -m rules lists create mule_devices --kind block --field device_id --actor alice
    python -m rules lists add mule_devices DEV_MULE_1 DEV_2 [--expires 2030-01-01T00:00:00Z] --actor alice --reason "..."
    python -m rules lists remove mule_devices DEV_MULE_1 --actor alice --reason "..."
    python -m rules lists import mule_devices --csv devices.csv --actor alice --reason "..."  # value[,expires_at,reason]
    python -m rules lists show mule_devices

``--actor`` is a portal user (python -m portal add-user NAME --role rule_author|rule_approver).
Every command takes ``--pg-schema`` (default public). Exit status 2 for a refused change or a
rule that does not compile, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from fraudops.settings import load_settings
from rules.language import RuleError, compile_rule
from rules.store import (
    ACTIONS,
    LIST_FIELDS,
    LIST_KINDS,
    RULE_CHANGES,
    ListEntry,
    RuleStore,
    RuleStoreError,
    read_entries_csv,
)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m rules`` (rules, approvals, backtests, lists)."""
    from fraudops.cli import HelpFormatter, add_command

    parser = argparse.ArgumentParser(prog="python -m rules", description="decision rules and lists",
                                     formatter_class=HelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--pg-schema", default="public", help="PostgreSQL schema of the rules tables")
    sub = parser.add_subparsers(dest="command", required=True)
    check = add_command(sub, "check", help="compile an expression (nothing saved)")
    check.add_argument("--expression", required=True, help="a CEL expression")
    save = add_command(sub, "save", help="save a new version of a rule (a draft)")
    save.add_argument("name", help="the rule's name")
    save.add_argument("--expression", required=True, help="a CEL expression that is true when the rule fires")
    save.add_argument("--action", required=True, choices=ACTIONS, help="what the rule does when it fires")
    save.add_argument("--priority", type=int, default=100, help="order among rules of the same action (lower first)")
    save.add_argument("--description", default="", help="what the rule is for")
    save.add_argument("--actor", required=True, help="the portal user saving it")
    save.add_argument("--reason", default="", help="why (audit_log)")
    request = add_command(sub, "request", help="publish / shadow / retire a rule version (four-eyes: pending)")
    request.add_argument("change", choices=RULE_CHANGES, help="the change requested")
    request.add_argument("name", help="the rule's name")
    request.add_argument("--version", type=int, default=None, help="default: the newest")
    request.add_argument("--actor", required=True, help="the portal user requesting it")
    request.add_argument("--reason", required=True, help="why (audit_log)")
    for verb in ("approve", "reject"):
        decide = add_command(sub, verb, help=f"{verb} a pending change (a rule_approver, not the requester)")
        decide.add_argument("request_id", type=int, help="the change's id (python -m rules pending)")
        decide.add_argument("--actor", required=True, help="the approving portal user")
        decide.add_argument("--reason", default="", help="why (audit_log)")
    add_command(sub, "pending", help="changes waiting for approval")
    add_command(sub, "list", help="the rules")
    history = add_command(sub, "history", help="every version of a rule")
    history.add_argument("name", help="the rule's name")
    bt = add_command(sub, "backtest", help="a rule or expression on the stored transactions and their labels")
    what = bt.add_mutually_exclusive_group(required=True)
    what.add_argument("--expression", help="a CEL expression (or --rule)")
    what.add_argument("--rule", help="a saved rule's name (or --expression)")
    bt.add_argument("--version", type=int, default=None, help="the --rule's version (default: the newest)")
    bt.add_argument("--days", type=int, default=30, help="how many days of stored transactions")
    bt.add_argument("--json", action="store_true", help="print the result as JSON")
    lists = add_command(sub, "lists", help="block and allow lists")
    lsub = lists.add_subparsers(dest="list_command", required=True)
    create = add_command(lsub, "create", help="a new, empty list")
    create.add_argument("name", help="the list's name")
    create.add_argument("--kind", required=True, choices=LIST_KINDS, help="block or allow")
    create.add_argument("--field", required=True, choices=LIST_FIELDS, help="the transaction field the list holds")
    create.add_argument("--description", default="", help="what the list is for")
    create.add_argument("--actor", required=True, help="the portal user creating it")
    for verb in ("add", "remove"):
        change = add_command(lsub, verb, help=f"{verb} entries (more than RULES_LIST_APPROVAL_SIZE: four-eyes)")
        change.add_argument("name", help="the list's name")
        change.add_argument("values", nargs="+", help="the entries")
        if verb == "add":
            change.add_argument("--expires", default=None, help="ISO-8601 time the entries expire (default: never)")
        change.add_argument("--actor", required=True, help="the portal user changing it")
        change.add_argument("--reason", required=True, help="why (audit_log)")
    imp = add_command(lsub, "import", help="bulk add from CSV (header: value[,expires_at,reason])")
    imp.add_argument("name", help="the list's name")
    imp.add_argument("--csv", required=True, help="the CSV file")
    imp.add_argument("--actor", required=True, help="the portal user importing it")
    imp.add_argument("--reason", required=True, help="why (audit_log)")
    show = add_command(lsub, "show", help="the lists, or one list's entries")
    show.add_argument("name", nargs="?", help="the list's name (default: every list)")
    return parser


def _expires(text: str | None, parser) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parser.error(f"argument --expires: not an ISO-8601 time: {text!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        try:
            compiled = compile_rule("expression", args.expression)
        except RuleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"ok: reads {', '.join(compiled.fields) or 'nothing'}; lists {', '.join(compiled.lists) or 'none'}")
        return 0
    if args.command == "backtest" and args.days < 1:
        parser.error(f"argument --days must be >= 1 (got {args.days})")
    if args.command == "lists" and args.list_command == "import" and not Path(args.csv).is_file():
        parser.error(f"argument --csv: no such file {args.csv!r}")
    from fraudops.db import connect

    settings = load_settings()
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('search_path', %s, false)", (args.pg_schema,))
        conn.commit()
        store = RuleStore.from_settings(conn, settings)
        return _run(args, store, conn, parser)
    except (RuleError, RuleStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()


def _run(args, store: RuleStore, conn, parser) -> int:
    if args.command == "save":
        version = store.save_rule(args.actor, args.name, args.expression, args.action, args.priority,
                                  args.description, args.reason)
        print(f"saved {args.name} version {version} (draft); publish with: python -m rules request publish "
              f"{args.name} --actor {args.actor} --reason ...")
    elif args.command == "request":
        result = store.request(args.actor, args.change, args.name, args.version, args.reason)
        print(f"change request {result['request_id']}: {result['status']}"
              + (" (a rule_approver other than you approves it: python -m rules approve "
                 f"{result['request_id']} --actor NAME)" if result["status"] == "pending" else ""))
    elif args.command in ("approve", "reject"):
        getattr(store, args.command)(args.actor, args.request_id, args.reason)
        print(f"change request {args.request_id}: {'applied' if args.command == 'approve' else 'rejected'}")
    elif args.command == "pending":
        for row in store.pending():
            target = f"{row['rule_name']} v{row['rule_version']}" if row["rule_name"] else f"list {row['list_name']}"
            print(f"{row['request_id']:>6}  {row['kind']:<11} {target:<32} by {row['requested_by']:<12} "
                  f"{row['requested_at']:%Y-%m-%d %H:%M}  {row['reason']}")
    elif args.command == "list":
        for rule in store.rules():
            print(f"{rule.state:<8} p{rule.priority:<4} {rule.action:<8} {rule.name} v{rule.version}: {rule.expression}")
    elif args.command == "history":
        for rule in store.history(args.name):
            print(json.dumps(rule.as_dict()))
    elif args.command == "backtest":
        from rules.backtest import backtest

        expression = args.expression
        if expression is None:
            expression = store.rule(args.rule, args.version).expression
        result = backtest(conn, expression, args.days)
        print(json.dumps(result.as_dict()) if args.json else "\n".join(result.lines()))
    elif args.command == "lists":
        return _lists(args, store, parser)
    return 0


def _lists(args, store: RuleStore, parser) -> int:
    command = args.list_command
    if command == "create":
        store.create_list(args.actor, args.name, args.kind, args.field, args.description)
        print(f"list {args.name} created ({args.kind} list of {args.field})")
        return 0
    if command == "show":
        if args.name is None:
            for row in store.lists():
                print(f"{row['name']:<24} {row['kind']:<6} {row['field']:<12} {row['entries']:>7} entries")
        else:
            for entry in store.entries(args.name):
                expires = entry["expires_at"].isoformat() if entry["expires_at"] else "never"
                print(f"{entry['value']}\texpires {expires}\t{entry['reason']}")
        return 0
    if command == "add":
        entries = [ListEntry(v, _expires(args.expires, parser), args.reason) for v in args.values]
        result = store.change_list(args.actor, args.name, add=entries, reason=args.reason)
    elif command == "remove":
        result = store.change_list(args.actor, args.name, remove=args.values, reason=args.reason)
    else:
        entries = read_entries_csv(Path(args.csv).read_text(encoding="utf-8"), args.csv)
        result = store.change_list(args.actor, args.name, add=entries, reason=args.reason)
    print(f"list change request {result['request_id']}: {result['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
