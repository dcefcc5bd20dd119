"""The demo's analyst login for the portal (a step of `make demo`).

Reads/writes: ``<state dir>/portal-demo.env`` (mode 600: PORTAL_DEMO_USER, PORTAL_DEMO_PASSWORD;
generated on the first run and kept, so the login stays the same across demo runs) and the
portal user itself in PostgreSQL (public.portal_users, role analyst, password set to the file's).

    python -m devstack.portal_demo        # create or refresh the demo analyst, print the login
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from fraudops.settings import Settings, load_settings, read_env_file

DEMO_USER = "demo-analyst"


def login_file(settings: Settings) -> Path:
    return settings.state_dir / "portal-demo.env"


def demo_login(settings: Settings) -> tuple[str, str]:
    """(user, password) of the demo analyst, generated into the login file the first time."""
    path = login_file(settings)
    values = read_env_file(path)
    if values.get("PORTAL_DEMO_USER") and values.get("PORTAL_DEMO_PASSWORD"):
        return values["PORTAL_DEMO_USER"], values["PORTAL_DEMO_PASSWORD"]
    password = secrets.token_urlsafe(12)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"PORTAL_DEMO_USER={DEMO_USER}\nPORTAL_DEMO_PASSWORD={password}\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return DEMO_USER, password


def summary_lines(settings: Settings) -> list[str]:
    """What the demo summary prints about the portal (URL and login; nothing when not set up)."""
    values = read_env_file(login_file(settings))
    if not values.get("PORTAL_DEMO_USER"):
        return []
    return [f"  Portal      : http://127.0.0.1:{settings.portal_port}/  login {values['PORTAL_DEMO_USER']} / "
            f"{values['PORTAL_DEMO_PASSWORD']}  (also in {login_file(settings)})"]


def main() -> int:
    from portal.db import connect_on_schema
    from portal.users import save_user

    settings = load_settings()
    user, password = demo_login(settings)
    conn = connect_on_schema(settings, "public")
    try:
        save_user(conn, user, "analyst", password)
    finally:
        conn.close()
    print("\n".join(summary_lines(settings)).strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
