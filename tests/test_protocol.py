"""Each way the real server silently loses or alters a breadcrumb is prevented here.

PROTOCOL.md lists what migas-server 0.9 answers 202 to and then loses at ingestion, or
stores altered. The local collector reproduces those losses (and records them in
``lost()``). Each test feeds the offending value through our breadcrumb model, sends it
with ``?wait=true``, and checks that the server stored it whole: nothing lost, nothing
altered from what we sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from migas_logging.breadcrumb import Breadcrumb, Context
from migas_logging.collector import LocalCollector
from migas_logging.transport import Transport

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


def send_and_fetch(collector: LocalCollector, crumb: Breadcrumb) -> dict[str, Any]:
    outcome = Transport(collector.url, 5).send(crumb, wait=True)
    assert outcome.ok, outcome
    assert 200 == outcome.status  # ingested, not merely accepted
    assert [] == collector.lost()
    (row,) = collector.breadcrumbs()
    sent = json.loads(collector.requests()[-1].body)
    assert sent["project_version"] == row["project_version"]
    assert sent["language_version"] == row["language_version"]
    for key in ("status_desc", "error_type", "error_desc"):
        assert sent["proc"].get(key) == row[key]
    return row


SILENT_LOSSES = {
    "version not matching the pattern (stored as unknown)": {"project_version": "1.0 beta/2"},
    "version over 24 characters (cut)": {"project_version": "0.1.dev1234+g0123456789abcdef.d2024"},
    "language_version not matching": {"language_version": "3.11.7 (main, Dec 2023)"},
    "language over 32 characters (ingestion fails)": {"language": "p" * 100},
    "user_id not a UUID (ingestion fails)": {"ctx": Context(user_id="alice@host")},
    "session_id not a UUID (ingestion fails)": {"ctx": Context(session_id="run-42")},
    "platform over 64 characters (ingestion fails)": {
        "ctx": Context(user_id="5c9a8b1e-6f3d-4c2a-9b7e-1d2c3b4a5f60", platform="x" * 200)
    },
    "NUL in a text (PostgreSQL refuses it)": {"status_desc": "a\x00b", "error_desc": "\x00"},
    "lone surrogate in a text (not UTF-8)": {"error_type": "E\ud800", "status_desc": "\udfff"},
    "body over 2,500 bytes (413)": {"error_desc": "e" * 10_000, "status_desc": "s" * 5_000},
}


@pytest.mark.parametrize("fields", list(SILENT_LOSSES.values()), ids=list(SILENT_LOSSES))
def test_prevented(collector: LocalCollector, fields: dict[str, Any]) -> None:
    """The value the real server would lose or alter is made safe before sending."""
    base: dict[str, Any] = {
        "project": PROJECT,
        "project_version": "1.0.0",
        "language_version": "3.11.7",
    }
    base.update(fields)
    row = send_and_fetch(collector, Breadcrumb(**base))
    assert "unknown" != row["project_version"]


def test_collector_really_loses_them(collector: LocalCollector) -> None:
    """The same values sent raw are lost or altered: the tests above can fail."""
    import requests

    raw = [
        {"project": PROJECT, "project_version": "1.0.0", "language": "p" * 100},
        {"project": PROJECT, "project_version": "1.0.0", "ctx": {"user_id": "alice@host"}},
        {"project": PROJECT, "project_version": "1.0.0", "proc": {"status_desc": "a\x00b"}},
    ]
    for body in raw:
        r = requests.post(collector.url + "/api/breadcrumb?wait=true", json=body, timeout=5)
        assert 500 == r.status_code
    assert 3 == len(collector.lost())
    r = requests.post(
        collector.url + "/api/breadcrumb",
        json={"project": PROJECT, "project_version": "1.0 beta/2"},
        timeout=5,
    )
    assert 202 == r.status_code
    assert "unknown" == collector.breadcrumbs()[-1]["project_version"]
