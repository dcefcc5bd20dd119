"""Rules and lists routes: the rules (newest and live versions), the change requests waiting for
approval and the lists; a rule's versions and its backtest; writing, checking, requesting,
approving and rejecting changes; a list's entries (added one per line or from a CSV upload, removed).

Every change goes through rules.store.RuleStore: it checks the role and four-eyes
(RULES_FOUR_EYES, RULES_LIST_APPROVAL_SIZE) and writes audit_log. Reads rules, rule_lists,
rule_list_entries, rule_change_requests and, for a backtest, transactions and labels.
A refusal (rules.store.NotAllowed) is a 403, a bad rule or change (RuleError, RuleStoreError) a
422, with the store's message on the page; a rule that does not compile keeps the form as sent.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from portal.web import PortalError, check_csrf, form_text, render, session_of, session_of_async, state
from rules.backtest import backtest
from rules.language import RuleError, compile_rule
from rules.store import (
    ACTIONS,
    AUTHOR_ROLES,
    LIST_FIELDS,
    LIST_KINDS,
    RULE_CHANGES,
    ListEntry,
    NotAllowed,
    RuleStore,
    RuleStoreError,
    read_entries_csv,
)

router = APIRouter()
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # rule and list names (migration 0007's CHECK)
MAX_EXPRESSION = 4000
MAX_TEXT = 2000
MAX_VALUES_TEXT = 500_000
MAX_CSV_BYTES = 5_000_000
DEFAULT_DAYS, MAX_DAYS = 30, 366
NEW_RULE = {"name": "", "expression": "", "action": "review", "priority": "100", "description": "", "reason": ""}


# ---------------------------------------------------------------- helpers

def _store(request: Request, conn) -> RuleStore:
    return RuleStore.from_settings(conn, state(request).settings)


def _refusal(exc: Exception) -> PortalError:
    """The store's message as a page: 403 for a refused actor, 422 for a bad rule or change."""
    return PortalError(403 if isinstance(exc, NotAllowed) else 422, str(exc))


def _require_author(session, what: str) -> None:
    """The role check of what the store does not guard (checking, backtesting): its wording."""
    role = session.user.role
    if role not in AUTHOR_ROLES:
        raise PortalError(403, f"{session.user.name!r} (role {role}) may not {what}: needs role "
                               f"{' or '.join(AUTHOR_ROLES)}")


def _known(name: str, what: str) -> str:
    """``name`` when it could be a rule or list name; 404 otherwise."""
    if not NAME.match(name):
        raise PortalError(404, f"no {what} {name[:64]!r}")
    return name


def _number(text: str, default: int | None = None):
    """An integer form field, ``default`` when empty, the text itself when it is not one (the store names it)."""
    text = text.strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        return text


def _version(text: str) -> int | None:
    value = _number(text)
    if value is not None and (not isinstance(value, int) or value < 1):
        raise PortalError(422, f"version={text.strip()!r} must be an integer >= 1 (empty: the newest)")
    return value


def _days(text: str) -> int:
    value = _number(text, DEFAULT_DAYS)
    if not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
        raise PortalError(422, f"days={text.strip()!r} must be an integer from 1 to {MAX_DAYS}")
    return value


def _expires(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PortalError(422, f"expires={text!r} is not an ISO-8601 time (e.g. 2030-01-01T00:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ids(params, *names: str) -> dict:
    """Integer query parameters (anything else is dropped: nothing of the URL is echoed)."""
    found = {}
    for name in names:
        value = _number(params.get(name, ""))
        found[name] = value if isinstance(value, int) else None
    return found


def _page(request: Request, session, template: str, context: dict, status: int = 200) -> Response:
    return render(request, template, {"actions": ACTIONS, "changes": RULE_CHANGES, "list_kinds": LIST_KINDS,
                                      "list_fields": LIST_FIELDS, **context}, status=status, session=session)


def _rules_page(request: Request, session, store: RuleStore, status: int = 200, **context) -> Response:
    return _page(request, session, "rules.html", {"rules": store.rules(), "pending": store.pending(),
                                                  "lists": store.lists(), "draft": dict(NEW_RULE), **context}, status)


def _rule_page(request: Request, session, store: RuleStore, name: str, **context) -> Response:
    versions = store.history(name)
    if not versions:
        raise PortalError(404, f"no rule {name!r}")
    return _page(request, session, "rule.html", {
        "name": name, "versions": list(reversed(versions)), "latest": versions[-1],
        "pending": [p for p in store.pending() if p["rule_name"] == name], "backtest": None, **context})


# ---------------------------------------------------------------- rules

@router.get("/rules")
def rules_page(request: Request) -> Response:
    session = session_of(request)
    result = request.query_params.get("result")
    with state(request).pool.connection() as conn:
        return _rules_page(request, session, _store(request, conn),
                           result=result if result in ("approved", "rejected") else None,
                           **_ids(request.query_params, "request_id"))


def _draft(form) -> dict:
    return {"name": form_text(form, "name", 64).strip(), "expression": form_text(form, "expression", MAX_EXPRESSION),
            "action": form_text(form, "action", 16).strip(), "priority": form_text(form, "priority", 16),
            "description": form_text(form, "description", MAX_TEXT), "reason": form_text(form, "reason", MAX_TEXT)}


@router.post("/rules")
async def save_rule(request: Request) -> Response:
    """A new version of a rule, as a draft; a rule that does not compile: 422, the form kept, nothing saved."""
    session = await session_of_async(request)
    form = await request.form()
    check_csrf(session, form)
    draft = _draft(form)

    def write() -> Response:
        with state(request).pool.connection() as conn:
            store = _store(request, conn)
            try:
                version = store.save_rule(session.user.name, draft["name"], draft["expression"], draft["action"],
                                          _number(draft["priority"], 100), draft["description"], draft["reason"])
            except NotAllowed as exc:
                raise _refusal(exc) from None
            except (RuleError, RuleStoreError) as exc:
                return _rules_page(request, session, store, 422, draft=draft, save_error=str(exc))
        return RedirectResponse(f"/rules/{draft['name']}?result=saved&version={version}", status_code=303)

    return await run_in_threadpool(write)


@router.post("/rules/check")
async def check_rule(request: Request) -> Response:
    """Compile the expression against the current lists, as saving would: nothing is saved."""
    session = await session_of_async(request)
    form = await request.form()
    check_csrf(session, form)
    _require_author(session, "check rules")
    draft = _draft(form)

    def check() -> Response:
        with state(request).pool.connection() as conn:
            store = _store(request, conn)
            try:
                compiled = compile_rule(draft["name"] or "expression", draft["expression"], store.known_lists())
            except RuleError as exc:
                return _rules_page(request, session, store, 422, draft=draft, check_error=str(exc))
            return _rules_page(request, session, store, draft=draft,
                               check_ok=f"ok: reads {', '.join(compiled.fields) or 'nothing'}; "
                                        f"lists {', '.join(compiled.lists) or 'none'}")

    return await run_in_threadpool(check)


@router.get("/rules/{name}")
def rule_page(request: Request, name: str) -> Response:
    session = session_of(request)
    _known(name, "rule")
    result = request.query_params.get("result")
    status = request.query_params.get("status")
    with state(request).pool.connection() as conn:
        return _rule_page(request, session, _store(request, conn), name,
                          result=result if result in ("saved", "requested") else None,
                          status=status if status in ("pending", "applied") else None,
                          **_ids(request.query_params, "version", "request_id"))


@router.post("/rules/{name}/backtest")
async def backtest_rule(request: Request, name: str) -> Response:
    """The rule's version (default: the newest) on the last ``days`` of stored transactions and labels."""
    session = await session_of_async(request)
    form = await request.form()
    check_csrf(session, form)
    _known(name, "rule")
    _require_author(session, "backtest rules")
    days, version = _days(form_text(form, "days", 16)), _version(form_text(form, "version", 16))

    def run() -> Response:
        with state(request).pool.connection() as conn:
            store = _store(request, conn)
            try:
                rule = store.rule(name, version)
                result = backtest(conn, rule.expression, days)
            except (RuleError, RuleStoreError) as exc:
                raise _refusal(exc) from None
            return _rule_page(request, session, store, name, backtest=result, backtest_version=rule.version)

    return await run_in_threadpool(run)


@router.post("/rules/{name}/request")
async def request_change(request: Request, name: str) -> Response:
    """Ask to publish / shadow / retire a version (default: the newest); with four-eyes it waits."""
    session = await session_of_async(request)
    form = await request.form()
    check_csrf(session, form)
    _known(name, "rule")
    kind, version = form_text(form, "kind", 16).strip(), _version(form_text(form, "version", 16))
    reason = form_text(form, "reason", MAX_TEXT)

    def write() -> dict:
        with state(request).pool.connection() as conn:
            try:
                return _store(request, conn).request(session.user.name, kind, name, version, reason)
            except (RuleError, RuleStoreError) as exc:
                raise _refusal(exc) from None

    outcome = await run_in_threadpool(write)
    return RedirectResponse(f"/rules/{name}?result=requested&request_id={outcome['request_id']}"
                            f"&status={outcome['status']}", status_code=303)


async def _decide(request: Request, request_id: int, approve: bool) -> Response:
    session = await session_of_async(request)
    form = await request.form()
    check_csrf(session, form)
    reason = form_text(form, "reason", MAX_TEXT)

    def write() -> None:
        with state(request).pool.connection() as conn:
            store = _store(request, conn)
            try:
                (store.approve if approve else store.reject)(session.user.name, request_id, reason)
            except (RuleError, RuleStoreError) as exc:
                raise _refusal(exc) from None

    await run_in_threadpool(write)
    return RedirectResponse(f"/rules?result={'approved' if approve else 'rejected'}&request_id={request_id}",
                            status_code=303)


@router.post("/rules/requests/{request_id}/approve")
async def approve_change(request: Request, request_id: int) -> Response:
    """Apply a pending change as its second person (a rule_approver other than the requester)."""
    return await _decide(request, request_id, approve=True)


@router.post("/rules/requests/{request_id}/reject")
async def reject_change(request: Request, request_id: int) -> Response:
    return await _decide(request, request_id, approve=False)


# ---------------------------------------------------------------- lists

@router.get("/lists")
def lists_page(request: Request) -> Response:
    session_of(request)
    return RedirectResponse("/rules#lists", status_code=303)


@router.post("/lists")
async def create_list(request: Request) -> Response:
    session = await session_of_async(request)
    form = await request.form()
    check_csrf(session, form)
    name, kind = form_text(form, "name", 64).strip(), form_text(form, "kind", 16).strip()
    field, description = form_text(form, "field", 32).strip(), form_text(form, "description", MAX_TEXT)

    def write() -> None:
        with state(request).pool.connection() as conn:
            try:
                _store(request, conn).create_list(session.user.name, name, kind, field, description)
            except RuleStoreError as exc:
                raise _refusal(exc) from None

    await run_in_threadpool(write)
    return RedirectResponse(f"/lists/{name}?result=created", status_code=303)


@router.get("/lists/{name}")
def list_page(request: Request, name: str) -> Response:
    session = session_of(request)
    _known(name, "list")
    result, status = request.query_params.get("result"), request.query_params.get("status")
    with state(request).pool.connection() as conn:
        store = _store(request, conn)
        try:
            info = store.list_info(name)
        except RuleStoreError:
            raise PortalError(404, f"no list {name!r}") from None
        return _page(request, session, "rule_list.html", {
            "list": info, "entries": store.entries(name),
            "pending": [p for p in store.pending() if p["list_name"] == name],
            "result": result if result in ("created", "changed") else None,
            "status": status if status in ("pending", "applied") else None,
            **_ids(request.query_params, "request_id")})


async def _uploaded_csv(form) -> tuple[str, str] | None:
    """(text, file name) of the ``csv`` upload; None when no file was chosen."""
    upload = form.get("csv")
    if upload is None or upload == "":
        return None
    if not isinstance(upload, UploadFile):
        raise PortalError(400, "csv: expected a file upload")
    data = await upload.read(MAX_CSV_BYTES + 1)
    if not data and not upload.filename:  # the browser's empty file field
        return None
    source = upload.filename or "CSV"
    if len(data) > MAX_CSV_BYTES:
        raise PortalError(422, f"{source}: at most {MAX_CSV_BYTES:,} bytes")
    try:
        return data.decode("utf-8-sig"), source
    except UnicodeDecodeError:
        raise PortalError(422, f"{source}: not UTF-8 text") from None


def _change(request: Request, session, name: str, **change) -> Response:
    with state(request).pool.connection() as conn:
        try:
            outcome = _store(request, conn).change_list(session.user.name, name, **change)
        except RuleStoreError as exc:
            raise _refusal(exc) from None
    return RedirectResponse(f"/lists/{name}?result=changed&request_id={outcome['request_id']}"
                            f"&status={outcome['status']}", status_code=303)


@router.post("/lists/{name}/entries")
async def add_entries(request: Request, name: str) -> Response:
    """Values one per line (with an optional expiry) and / or a CSV upload (value[,expires_at,reason])."""
    session = await session_of_async(request)
    form = await request.form()
    check_csrf(session, form)
    _known(name, "list")
    reason = form_text(form, "reason", MAX_TEXT)
    expires_at = _expires(form_text(form, "expires", 64))
    values = dict.fromkeys(v.strip() for v in form_text(form, "values", MAX_VALUES_TEXT).splitlines() if v.strip())
    entries = [ListEntry(v, expires_at, reason) for v in values]
    uploaded = await _uploaded_csv(form)
    if uploaded is not None:
        try:
            entries += read_entries_csv(*uploaded)
        except RuleStoreError as exc:
            raise _refusal(exc) from None
    return await run_in_threadpool(_change, request, session, name, add=entries, reason=reason)


@router.post("/lists/{name}/remove")
async def remove_entries(request: Request, name: str) -> Response:
    """The values typed one per line (``values``) and any ticked (``value``)."""
    session = await session_of_async(request)
    form = await request.form()
    check_csrf(session, form)
    _known(name, "list")
    typed = form_text(form, "values", MAX_VALUES_TEXT).splitlines()
    ticked = [v for v in form.getlist("value") if isinstance(v, str)]
    values = list(dict.fromkeys(v.strip() for v in [*typed, *ticked] if v.strip()))
    return await run_in_threadpool(_change, request, session, name, remove=values,
                                   reason=form_text(form, "reason", MAX_TEXT))
