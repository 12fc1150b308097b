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


# --- the collector behaves like migas-server 0.9 (issue 15) ---------------------------------

USER = "5c9a8b1e-6f3d-4c2a-9b7e-1d2c3b4a5f60"
TOKEN = "token-of-migas-logging"
OTHER = "nipreps/other"

#: The mutation as migas-py 0.4's ``add_project`` writes it (literal arguments, no
#: selection set: the result is a JSON scalar).
ADD_PROJECT_MIGAS_PY_04 = (
    'mutation{add_project(p:{project:"nipreps/migas-logging",project_version:"0.4.0",'
    'language:"python",language_version:"3.11.7",is_ci:false,user_id:"' + USER + '",'
    'session_id:"0a1b2c3d-0000-4000-8000-000000000001",container:unknown,'
    'user_type:general,platform:"linux"})}'
)
#: The mutation as the real server's own test sends it.
ADD_PROJECT_SERVER_TEST = (
    'mutation { add_project(p: {project: "nipreps/migas-logging", project_version: "0.5.0", '
    'language: "python", language_version: "3.12"}) }'
)


def raw_post(url: str, body: Any, *, path: str = "/api/breadcrumb") -> Any:
    import requests

    return requests.post(url + path, json=body, timeout=10)


def graphql(url: str, query: str) -> Any:
    return raw_post(url, {"query": query}, path="/graphql")


def age(db: str, seq: int, days: float) -> None:
    """Make the stored crumb ``seq`` look ``days`` old (the server's clock is the stamp)."""
    import sqlite3
    from datetime import datetime, timedelta, timezone

    moment = datetime.now(timezone.utc) - timedelta(days=days)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE breadcrumbs SET timestamp = ? WHERE seq = ?",
            (moment.strftime("%Y-%m-%dT%H:%M:%SZ"), seq),
        )
    conn.close()


def usage(url: str, project: str = PROJECT, token: str = TOKEN, query: str = "") -> Any:
    import requests

    return requests.get(
        f"{url}/api/usage/{project}{query}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def days_ago(days: float) -> str:
    from datetime import datetime, timedelta, timezone

    return (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y-%m-%d")


class TestLikeTheRealServer:
    """Each difference issue 15 found between the collector and migas-server 0.9."""

    def test_add_project_mutation_of_older_clients(self) -> None:
        """migas-py 0.4's ``add_project`` works: a breadcrumb plus what check_project says."""
        with LocalCollector(register=(PROJECT,), latest={PROJECT: "v1.4.0"}) as c:
            first = graphql(c.url, ADD_PROJECT_MIGAS_PY_04)
            again = graphql(c.url, ADD_PROJECT_SERVER_TEST)
            assert (200, 200) == (first.status_code, again.status_code)
            expected = {
                "bad_versions": [],
                "cached": False,  # the first look-up of the release is not cached
                "latest_version": "1.4.0",  # a leading v is stripped, like the server
                "message": "",
                "success": True,
            }
            assert {"data": {"add_project": expected}} == first.json()
            assert {**expected, "cached": True} == again.json()["data"]["add_project"]
            one, two = c.wait_for(2)
            assert ("0.4.0", "linux", "graphql") == (
                one["project_version"],
                one["platform"],
                one["via"],
            )
            assert ("0.5.0", "3.12", None) == (
                two["project_version"],
                two["language_version"],
                two["user_id"],
            )

    def test_add_project_refusals(self, collector: LocalCollector) -> None:
        """Unregistered: ``success: false``; an illegal status or version: a GraphQL error."""
        other = graphql(collector.url, ADD_PROJECT_SERVER_TEST.replace(PROJECT, "some/one"))
        assert {"data": {"add_project": {"success": False}}} == other.json()
        wtf = graphql(collector.url, ADD_PROJECT_SERVER_TEST.replace("}) }", ", status: wtf}) }"))
        assert wtf.json()["data"] is None
        bad = graphql(collector.url, ADD_PROJECT_SERVER_TEST.replace('"0.5.0"', '"latest!"'))
        assert "Invalid version" in bad.json()["errors"][0]["message"]
        assert [] == collector.breadcrumbs()
        assert "some/one" == collector.refused()[0]["project"]

    def test_add_project_normalises_versions(self, collector: LocalCollector) -> None:
        """Versions are PEP 440 scalars there: stored normalised (``v1.0-RC1`` is ``1.0rc1``)."""
        graphql(collector.url, ADD_PROJECT_SERVER_TEST.replace('"0.5.0"', '"v1.0-RC1"'))
        assert "1.0rc1" == collector.wait_for(1)[0]["project_version"]

    def test_rate_limit_is_on_by_default(self) -> None:
        """1,000 requests per 60 s per address are answered; the 1,001st is 429."""
        import requests

        with LocalCollector(register=(PROJECT,)) as c, requests.Session() as http:
            statuses = [
                http.post(c.url + "/api/breadcrumb", json={}, timeout=10).status_code
                for _ in range(1001)
            ]
            assert [422] * 1000 == statuses[:1000]  # counted, then refused for the body
            assert 429 == statuses[1000]
            assert [1000, 60.0] == c.stats()["rate_limit"]
        with LocalCollector(rate_limit=None) as c:
            assert c.stats()["rate_limit"] is None  # off where a test needs it

    @pytest.mark.parametrize(
        ("value", "stored"),
        [("true", True), (1, True), (0, False), ("yes", True), ("off", False), ("F", False)],
    )
    def test_is_ci_is_coerced_like_pydantic(
        self, collector: LocalCollector, value: Any, stored: bool
    ) -> None:
        """``is_ci`` values pydantic reads as booleans are accepted (202), not 422."""
        body = {"project": PROJECT, "project_version": "1.0", "ctx": {"is_ci": value}}
        assert 202 == raw_post(collector.url, body).status_code
        assert stored is collector.wait_for(1)[0]["is_ci"]

    def test_a_users_first_platform_and_container_are_kept(
        self, collector: LocalCollector
    ) -> None:
        """platform and container belong to the user: later values are ignored."""
        for platform, container in (("linux", "docker"), ("darwin", "apptainer")):
            ctx = {"user_id": USER, "platform": platform, "container": container}
            body = {"project": PROJECT, "project_version": "1.0", "ctx": ctx}
            assert 202 == raw_post(collector.url, body).status_code
        ctx = {"user_id": USER.replace("5c9a", "6c9a"), "platform": "win32"}
        raw_post(collector.url, {"project": PROJECT, "project_version": "1.0", "ctx": ctx})
        rows = collector.wait_for(3)
        assert [("linux", "docker")] * 2 + [("win32", "unknown")] == [
            (r["platform"], r["container"]) for r in rows
        ]

    @pytest.mark.parametrize("endpoint", ["rest", "graphql"])
    def test_rate_limit_is_checked_before_the_size(self, endpoint: str) -> None:
        """Over the rate limit and oversized: 429, not 413."""
        with LocalCollector(register=(PROJECT,), rate_limit=(1, 60)) as c:
            if endpoint == "rest":
                small = {"project": PROJECT, "project_version": "1.0"}
                big = {**small, "proc": {"status_desc": "x" * 5000}}
                path = "/api/breadcrumb"
            else:
                small = {"query": "{ get_projects }"}
                big = {"query": "{ get_projects }" + " " * 5000}
                path = "/graphql"
            assert raw_post(c.url, small, path=path).status_code in (200, 202)
            assert 429 == raw_post(c.url, big, path=path).status_code
            c.set_rate_limit(None)
            assert 413 == raw_post(c.url, big, path=path).status_code

    def test_usage_window_is_one_week_by_default(self, tmp_path: Any) -> None:
        """``GET /api/usage`` without ``weeks`` covers one week, not four."""
        db = str(tmp_path / "c.sqlite")
        with LocalCollector(register=(PROJECT,), tokens={PROJECT: TOKEN}, db=db) as c:
            for session in ("0a1b2c3d-0000-4000-8000-00000000000a", None):
                ctx = {"session_id": session} if session else {}
                body = {"project": PROJECT, "project_version": "1.0", "ctx": ctx}
                assert 200 == raw_post(c.url, body, path="/api/breadcrumb?wait=true").status_code
            age(db, 1, days=3)
            age(db, 2, days=10)
            assert [1] == [r["count"] for r in usage(c.url).json()]
            assert 2 == sum(r["count"] for r in usage(c.url, query="?weeks=2").json())

    def test_usage_leaves_out_rc_and_local_versions(self, collector: LocalCollector) -> None:
        """Versions containing ``rc`` or ``+`` are not on the dashboard."""
        collector.register(PROJECT, token=TOKEN)
        for n, version in enumerate(("2.0rc1", "2.0+local", "2.0"), start=1):
            ctx = {"session_id": f"0a1b2c3d-0000-4000-8000-00000000000{n}"}
            body = {"project": PROJECT, "project_version": version, "ctx": ctx}
            raw_post(collector.url, body)
        collector.wait_for(3)
        assert ["2.0"] == [r["version"] for r in usage(collector.url).json()]

    def test_usage_dates_a_session_by_its_first_crumb(self, tmp_path: Any) -> None:
        """A session counts on the day it started, with its latest version and status."""
        db = str(tmp_path / "c.sqlite")
        session = {"session_id": "0a1b2c3d-0000-4000-8000-00000000000b"}
        with LocalCollector(register=(PROJECT,), tokens={PROJECT: TOKEN}, db=db) as c:
            for status in ("R", "C"):
                body = {"project": PROJECT, "project_version": "1.0", "ctx": session}
                body["proc"] = {"status": status}
                raw_post(c.url, body, path="/api/breadcrumb?wait=true")
            age(db, 1, days=3)
            assert [{"version": "1.0", "date": days_ago(3), "status": "C", "count": 1}] == (
                usage(c.url).json()
            )
            age(db, 1, days=8)  # started before the window: not counted
            assert [] == usage(c.url).json()

    def test_usage_of_an_unknown_project_is_403_to_a_project_token(
        self, collector: LocalCollector
    ) -> None:
        """The token's scope is checked before the project exists: 403, not 404."""
        collector.register(PROJECT, token=TOKEN)
        answer = usage(collector.url, project="nobody/nothing")
        assert 403 == answer.status_code
        assert {"detail": "Token does not have access to project nobody/nothing."} == (
            answer.json()
        )

    def test_home_page_is_200(self, collector: LocalCollector) -> None:
        """``GET /`` answers 200 with an HTML page, like the server's home page."""
        import requests

        answer = requests.get(collector.url + "/", timeout=10)
        assert 200 == answer.status_code
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "migas@0.9" == answer.headers["X-Backend-Server"]
