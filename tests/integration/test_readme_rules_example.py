"""The README's worked example of "Rules and lists", run line by line as written (the real
PostgreSQL; only ``--pg-schema`` of a private schema is added, and ``python`` is the venv's)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import decisions_support as ds

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def worked_example() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Rules and lists (`rules/`)", 1)[1]
    block = re.search(r"A worked example.*?```bash\n(.*?)```", section, re.S)
    assert block, "the README's rules section has no worked example"
    return [line for line in block.group(1).splitlines() if line.strip()]


def in_schema(line: str, schema: str) -> str:
    line = line.replace("python -m rules ", f"{sys.executable} -m rules --pg-schema {schema} ")
    if "python -m portal add-user" in line:
        line = line.replace("python -m portal", f"{sys.executable} -m portal") + f" --pg-schema {schema}"
    return line


def test_the_worked_example_runs_as_written(settings):
    lines = worked_example()
    assert len(lines) >= 8
    env = {**os.environ, "PASSWORD": "a long enough password 1234"}
    outputs = []
    with ds.private_space(settings, "x") as space:
        for line in lines:
            result = subprocess.run(["bash", "-c", in_schema(line, space["schema"])], capture_output=True, text=True,
                                    cwd=ROOT, env=env, timeout=120)
            assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
            outputs.append(result.stdout)
        conn = ds.schema_connection(settings, space["schema"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT state FROM rules WHERE name = 'big_new_country'")
                assert cur.fetchall() == [("active",)]
                cur.execute("SELECT value FROM rule_list_entries WHERE list_name = 'mule_devices'")
                assert cur.fetchall() == [("DEV_MULE_1",)]
                cur.execute("SELECT requested_by, approved FROM (SELECT details->>'requested_by' AS requested_by, "
                            "details->>'approved_by' AS approved FROM audit_log WHERE event_type = "
                            "'rule_change_applied') a ORDER BY 1")
                assert ("alice", "bob") in cur.fetchall()
        finally:
            conn.close()
    text = "\n".join(outputs)
    assert "backtest of `amount > 2000.0 && user_new_country == 1.0` on the last 30 days" in text
    assert "change request 2: pending" in text and "change request 2: applied" in text
    assert "active   p50   review   big_new_country v1" in text
