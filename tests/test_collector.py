"""Tests of the local migas collector, through real HTTP on 127.0.0.1.

One test per row of PROTOCOL.md's tables (endpoints, breadcrumb fields), per GraphQL
behaviour, per fault kind, plus the rate and size limits, keep-alive, concurrency, the
SQLite file mode, another process, and the pytest fixtures.
"""

from __future__ import annotations

import calendar
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import requests

from migas_logging.collector import FAULT_KINDS, LocalCollector, free_port
from migas_logging.pytest_plugin import (  # noqa: F401 - fixtures used by name below
    migas_collector,
    migas_collector_factory,
)

pytest_plugins = ["pytester"]

PROJECT = "nipreps/migas-logging"
OTHER = "nipreps/other"
TOKEN = "token-of-migas-logging"
OTHER_TOKEN = "token-of-other"
TOO_MANY = {"detail": "Too many requests, wait a minute."}
ACCEPTED = {"success": True, "message": ""}


def crumb(**fields: Any) -> dict[str, Any]:
    """A valid REST breadcrumb body; ``ctx``/``proc`` keys are merged into the defaults."""
    body: dict[str, Any] = {
        "project": PROJECT,
        "project_version": "1.2.3",
        "language": "python",
        "language_version": "3.11.7",
        "ctx": {
            "user_id": str(uuid.uuid4()),
            "session_id": str(uuid.uuid4()),
            "user_type": "general",
            "platform": "linux",
            "container": "unknown",
            "is_ci": False,
        },
        "proc": {"status": "R"},
    }
    for key, value in fields.items():
        if key in ("ctx", "proc") and isinstance(value, dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    """A started collector with two registered projects, a latest release and tokens."""
    with LocalCollector(
        register=(PROJECT, OTHER),
        latest={PROJECT: "1.4.0"},
        bad_versions={PROJECT: ["1.3.0"]},
        tokens={PROJECT: TOKEN, OTHER: OTHER_TOKEN},
    ) as c:
        yield c


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A keep-alive HTTP session."""
    with requests.Session() as session:
        yield session


def post(
    session: requests.Session, c: LocalCollector, body: Any, *, wait: bool = False, **kw: Any
) -> requests.Response:
    """POST a breadcrumb body as JSON (``wait=True`` adds ``?wait=true``)."""
    url = c.url + "/api/breadcrumb" + ("?wait=true" if wait else "")
    return session.post(url, json=body, timeout=10, **kw)


def gql(
    session: requests.Session,
    c: LocalCollector,
    query: str,
    variables: dict[str, Any] | None = None,
    **kw: Any,
) -> requests.Response:
    """POST a GraphQL operation."""
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    return session.post(c.url + "/graphql", json=payload, timeout=10, **kw)


def only_row(c: LocalCollector) -> dict[str, Any]:
    """The single stored breadcrumb."""
    rows = c.breadcrumbs()
    assert len(rows) == 1, rows
    return rows[0]


ADD_BREADCRUMB = """
mutation($project: String!, $version: String!, $ctx: ContextInput!, $proc: ProcessInput!) {
  add_breadcrumb(project: $project, project_version: $version, language: "python",
                 language_version: "3.11", ctx: $ctx, proc: $proc) { success message }
}
"""


class TestEndpoints:
    """PROTOCOL.md's endpoint table."""

    def test_breadcrumb_answers_202_and_stores(self, collector, http):
        """POST /api/breadcrumb answers 202 {"success": true, "message": ""} and stores it."""
        body = crumb(proc={"status": "F", "error_type": "ValueError", "error_desc": "boom"})
        response = post(http, collector, body)
        assert response.status_code == 202
        assert response.json() == ACCEPTED
        assert response.headers["Content-Type"] == "application/json"
        row = only_row(collector)
        assert (row["status"], row["error_type"], row["error_desc"]) == ("F", "ValueError", "boom")
        assert row["session_id"] == body["ctx"]["session_id"]
        assert row["via"] == "rest"
        assert row["client"] == "127.0.0.1"

    def test_wait_true_answers_200_once_stored(self, collector, http):
        """``?wait=true`` answers 200 with the same body, and the row is there already."""
        response = post(http, collector, crumb(), wait=True)
        assert response.status_code == 200
        assert response.json() == ACCEPTED
        assert len(collector.breadcrumbs()) == 1

    def test_wait_true_answers_500_when_ingestion_fails(self, collector, http):
        """``?wait=true`` answers 500 "Error during ingestion." for a crumb the DB refuses."""
        response = post(http, collector, crumb(language="x" * 33), wait=True)
        assert response.status_code == 500
        assert response.json() == {"success": False, "message": "Error during ingestion."}
        assert collector.breadcrumbs() == []
        assert len(collector.lost()) == 1

    def test_every_answer_carries_the_backend_header(self, collector, http):
        """X-Backend-Server: migas@0.9 is on 202, 400, 404, 405, 422 and GraphQL answers."""
        answers = [
            post(http, collector, crumb()),
            post(http, collector, crumb(project="nope")),
            http.get(collector.url + "/nowhere"),
            http.get(collector.url + "/api/breadcrumb"),
            post(http, collector, {"project": PROJECT}),
            gql(http, collector, "{ get_projects }"),
        ]
        assert [a.status_code for a in answers] == [202, 400, 404, 405, 422, 200]
        assert {a.headers.get("X-Backend-Server") for a in answers} == {"migas@0.9"}

    def test_unknown_path_is_404(self, collector, http):
        """An unknown path answers 404 {"detail": "Not Found"}."""
        response = http.post(collector.url + "/api/nothing", json={})
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}

    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "/api/breadcrumb"), ("PUT", "/graphql"), ("POST", "/api/usage/a/b")],
    )
    def test_wrong_method_is_405(self, collector, http, method, path):
        """A known path with the wrong method answers 405 {"detail": "Method Not Allowed"}."""
        response = http.request(method, collector.url + path)
        assert response.status_code == 405
        assert response.json() == {"detail": "Method Not Allowed"}

    def test_older_server_has_no_rest_endpoint(self, http):
        """``rest=False``: /api/breadcrumb is 404, the GraphQL mutation still stores."""
        with LocalCollector(rest=False) as old:
            response = post(http, old, crumb())
            assert response.status_code == 404
            assert response.json() == {"detail": "Not Found"}
            variables = {"project": PROJECT, "version": "1.0", "ctx": {}, "proc": {"status": "C"}}
            answer = gql(http, old, ADD_BREADCRUMB, variables)
            assert answer.json() == {"data": {"add_breadcrumb": ACCEPTED}}
            assert only_row(old)["via"] == "graphql"


class TestBreadcrumbFields:
    """PROTOCOL.md's breadcrumb field table, and what the server does silently."""

    def test_project_without_slash_is_400(self, collector, http):
        """A project without '/' answers 400 "Invalid project format (expected owner/repo).\""""
        response = post(http, collector, crumb(project="migas"))
        assert response.status_code == 400
        assert response.json() == {"detail": "Invalid project format (expected owner/repo)."}

    def test_unregistered_project_is_400(self, collector, http):
        """An unregistered project answers 400 "Project is not registered.\""""
        response = post(http, collector, crumb(project="someone/else"))
        assert response.status_code == 400
        assert response.json() == {"detail": "Project is not registered."}

    @pytest.mark.parametrize("field", ["project_version", "language_version"])
    @pytest.mark.parametrize(
        ("sent", "stored"),
        [
            ("1.0.0", "1.0.0"),
            ("0.8.1.dev17+gcaf8859", "0.8.1.dev17+gcaf8859"),
            ("v1.0_custom-2", "v1.0_custom-2"),
            ("has spaces", "unknown"),
            ("<script>x</script>", "unknown"),
            ("", "unknown"),
            ("1.0\n", "unknown"),
        ],
    )
    def test_invalid_versions_are_stored_as_unknown(self, collector, http, field, sent, stored):
        """Versions not matching ^[A-Za-z0-9._+-]+$ are silently stored as 'unknown'."""
        assert post(http, collector, crumb(**{field: sent})).status_code == 202
        assert only_row(collector)[field] == stored

    @pytest.mark.parametrize("field", ["project_version", "language_version"])
    def test_long_versions_are_cut_to_24(self, collector, http, field):
        """A version over 24 characters is silently cut to 24."""
        assert post(http, collector, crumb(**{field: "1.2.3.dev" + "9" * 30})).status_code == 202
        assert only_row(collector)[field] == ("1.2.3.dev" + "9" * 30)[:24]

    def test_language_over_32_characters_is_lost(self, collector, http):
        """``language`` over 32 characters: 202, then lost at ingestion (and recorded)."""
        assert post(http, collector, crumb(language="p" * 32)).status_code == 202
        response = post(http, collector, crumb(language="p" * 33))
        assert response.status_code == 202
        assert len(collector.breadcrumbs()) == 1
        (lost,) = collector.lost()
        assert lost["language"] == "p" * 33
        assert "language" in lost["reason"]

    @pytest.mark.parametrize("field", ["user_id", "session_id"])
    @pytest.mark.parametrize(
        "value", ["not-a-uuid", "", "1234", "urn:uuid:22dee65b-9176-4ded-8c8c-4dc1c594fb90"]
    )
    def test_non_uuid_ids_are_lost(self, collector, http, field, value):
        """A non-UUID ``user_id``/``session_id`` is answered 202 and lost."""
        response = post(http, collector, crumb(ctx={field: value}))
        assert response.status_code == 202
        assert collector.breadcrumbs() == []
        (lost,) = collector.lost()
        assert field in lost["reason"]

    def test_uuid_forms_postgresql_accepts_are_stored_canonically(self, collector, http):
        """Upper case, braces and no hyphens are UUIDs to PostgreSQL: stored lower-case."""
        uid = uuid.uuid4()
        sent = {"user_id": "{" + str(uid).upper() + "}", "session_id": uid.hex}
        assert post(http, collector, crumb(ctx=sent)).status_code == 202
        row = only_row(collector)
        assert row["user_id"] == row["session_id"] == str(uid)

    def test_user_type_must_be_an_enum_value(self, collector, http):
        """``ctx.user_type`` outside general/dev/ci answers 422 with pydantic's detail."""
        response = post(http, collector, crumb(ctx={"user_type": "admin"}))
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "ctx", "user_type"]
        assert error["type"] == "enum"
        assert error["msg"] == "Input should be 'general', 'dev' or 'ci'"

    def test_user_type_is_stored_as_general(self, collector, http):
        """A valid ``user_type`` other than general is accepted and stored as 'general'."""
        assert post(http, collector, crumb(ctx={"user_type": "dev"})).status_code == 202
        assert only_row(collector)["user_type"] == "general"

    def test_container_must_be_an_enum_value(self, collector, http):
        """``ctx.container`` outside unknown/docker/apptainer answers 422."""
        response = post(http, collector, crumb(ctx={"container": "podman"}))
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "ctx", "container"]

    def test_platform_over_64_characters_is_lost(self, collector, http):
        """``platform`` over 64 characters (stored with the user): 202 then lost."""
        assert post(http, collector, crumb(ctx={"platform": "l" * 64})).status_code == 202
        assert post(http, collector, crumb(ctx={"platform": "l" * 65})).status_code == 202
        assert len(collector.breadcrumbs()) == 1
        assert "platform" in collector.lost()[0]["reason"]

    def test_platform_and_container_are_stored_only_with_a_user_id(self, collector, http):
        """Without ``user_id`` neither platform nor container is stored."""
        with_user = crumb(ctx={"platform": "darwin", "container": "docker"})
        without = crumb(ctx={"platform": "darwin", "container": "docker", "user_id": None})
        assert post(http, collector, with_user).status_code == 202
        assert post(http, collector, without).status_code == 202
        first, second = collector.breadcrumbs()
        assert (first["platform"], first["container"]) == ("darwin", "docker")
        assert (second["platform"], second["container"], second["user_id"]) == (None, None, None)

    @pytest.mark.parametrize("value", [None, "maybe", 2, 0.5, [True], {}])
    def test_is_ci_must_be_a_boolean(self, collector, http, value):
        """``ctx.is_ci`` that pydantic cannot read as a boolean answers 422."""
        response = post(http, collector, crumb(ctx={"is_ci": value}))
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "ctx", "is_ci"]

    def test_is_ci_is_stored(self, collector, http):
        """A JSON boolean ``is_ci`` is stored as a boolean."""
        assert post(http, collector, crumb(ctx={"is_ci": True})).status_code == 202
        assert only_row(collector)["is_ci"] is True

    def test_status_must_be_r_c_f_or_s(self, collector, http):
        """``proc.status`` outside R/C/F/S answers 422; an omitted one is stored as R."""
        response = post(http, collector, crumb(proc={"status": "failed"}))
        assert response.status_code == 422
        assert response.json()["detail"][0]["msg"] == "Input should be 'R', 'C', 'F' or 'S'"
        body = crumb()
        body["proc"] = {}
        assert post(http, collector, body).status_code == 202
        assert only_row(collector)["status"] == "R"

    @pytest.mark.parametrize("field", ["status_desc", "error_type", "error_desc"])
    @pytest.mark.parametrize("text", ["nul \x00 inside", "lone \ud800 surrogate"])
    def test_text_postgresql_cannot_store_is_lost(self, collector, http, field, text):
        """A NUL character or a lone surrogate in a text field: 202, then lost."""
        body = json.dumps(crumb(proc={field: text})).encode()  # ensure_ascii: \\u escapes
        response = http.post(
            collector.url + "/api/breadcrumb",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 202
        assert collector.breadcrumbs() == []
        assert field in collector.lost()[0]["reason"]

    def test_utf8_encoded_surrogate_is_lost_but_other_bad_utf8_is_400(self, collector, http):
        """Bytes that decode to a surrogate are lost after 202; other invalid UTF-8 is 400."""
        headers = {"Content-Type": "application/json"}
        good = json.dumps(crumb(proc={"status_desc": "@"})).encode()
        surrogate = good.replace(b"@", b"\xed\xa0\x80")
        response = http.post(collector.url + "/api/breadcrumb", data=surrogate, headers=headers)
        assert response.status_code == 202
        assert len(collector.lost()) == 1
        broken = good.replace(b"@", b"\xff")
        response = http.post(collector.url + "/api/breadcrumb", data=broken, headers=headers)
        assert response.status_code == 400
        assert response.json() == {"detail": "There was an error parsing the body"}
        assert collector.breadcrumbs() == []

    def test_body_over_max_size_is_413(self, collector, http):
        """A body over 2,500 bytes answers 413 with the exact message; 2,500 is accepted."""
        base = crumb(proc={"status_desc": ""})
        pad = 2500 - len(json.dumps(base).encode())
        exact = crumb(proc={"status_desc": "x" * pad})
        over = crumb(proc={"status_desc": "x" * (pad + 1)})
        assert len(json.dumps(exact).encode()) == 2500
        assert post(http, collector, exact).status_code == 202
        response = post(http, collector, over)
        assert response.status_code == 413
        assert response.json() == {"detail": "Request body (2501) exceeds maximum size (2500)"}
        assert len(collector.breadcrumbs()) == 1

    def test_missing_content_type_is_422(self, collector, http):
        """A body without ``Content-Type: application/json`` answers 422."""
        body = json.dumps(crumb()).encode()
        response = http.post(collector.url + "/api/breadcrumb", data=body)
        assert response.status_code == 422
        response = http.post(
            collector.url + "/api/breadcrumb", data=body, headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 422
        assert collector.breadcrumbs() == []

    def test_malformed_json_is_422(self, collector, http):
        """Malformed JSON answers 422 with a json_invalid error."""
        response = http.post(
            collector.url + "/api/breadcrumb",
            data=b'{"project": ',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["type"] == "json_invalid"

    @pytest.mark.parametrize("field", ["project", "project_version"])
    def test_missing_required_field_is_422(self, collector, http, field):
        """A missing ``project`` or ``project_version`` answers 422 'Field required'."""
        body = crumb()
        del body[field]
        response = post(http, collector, body)
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", field]
        assert error["msg"] == "Field required"
        assert error["type"] == "missing"

    def test_wrong_types_are_422(self, collector, http):
        """A number where text is expected, or a list for ``ctx``, answers 422."""
        response = post(http, collector, crumb(project_version=1, ctx=[]))
        assert response.status_code == 422
        locs = [e["loc"] for e in response.json()["detail"]]
        assert locs == [["body", "project_version"], ["body", "ctx"]]

    def test_omitted_optional_fields_get_server_defaults(self, collector, http):
        """Omitted ``language_version`` is '0.0.0', ``language`` 'python'; extras ignored."""
        body = {"project": PROJECT, "project_version": "1.0", "params": {"x": 1}}
        assert post(http, collector, body).status_code == 202
        row = only_row(collector)
        assert (row["language"], row["language_version"]) == ("python", "0.0.0")
        assert (row["status"], row["is_ci"], row["user_id"]) == ("R", False, None)

    def test_timestamp_is_the_servers_to_the_second_and_seq_orders(self, collector, http):
        """Timestamps are UTC to the second; ``seq`` orders crumbs within one second."""
        before = time.time()
        for status in "RRC":
            post(http, collector, crumb(proc={"status": status}))
        rows = collector.breadcrumbs()
        assert [r["status"] for r in rows] == ["R", "R", "C"]
        assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
        assert len({r["seq"] for r in rows}) == 3
        for row in rows:
            stamp = calendar.timegm(time.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
            assert int(before) <= stamp <= time.time()


class TestRateLimit:
    """The sliding-window rate limit, per client address, shared by REST and GraphQL."""

    def test_over_the_limit_is_429_without_retry_after(self, http):
        """Past the limit: 429 {"detail": "Too many requests, wait a minute."}, no Retry-After."""
        with LocalCollector(rate_limit=(3, 30)) as c:
            statuses = [post(http, c, crumb()).status_code for _ in range(3)]
            assert statuses == [202, 202, 202]
            response = post(http, c, crumb())
            assert response.status_code == 429
            assert response.json() == TOO_MANY
            assert "Retry-After" not in response.headers
            assert len(c.breadcrumbs()) == 3

    def test_rejected_requests_count_toward_the_window(self, http):
        """A client retrying while limited stays limited: rejected requests count."""
        with LocalCollector(rate_limit=(3, 0.6)) as c:
            for _ in range(3):
                assert post(http, c, crumb()).status_code == 202
            time.sleep(0.35)
            assert post(http, c, crumb()).status_code == 429  # counted at t=0.35
            time.sleep(0.35)  # the first three left the window, the rejected one did not
            statuses = [post(http, c, crumb()).status_code for _ in range(3)]
            assert statuses == [202, 202, 429]

    def test_limit_is_shared_by_rest_and_graphql(self, http):
        """GraphQL calls and breadcrumbs from one address share the window."""
        with LocalCollector(rate_limit=(2, 30)) as c:
            assert post(http, c, crumb()).status_code == 202
            assert gql(http, c, "{ get_projects }").status_code == 200
            assert post(http, c, crumb()).status_code == 429
            response = gql(http, c, "{ get_projects }")
            assert response.status_code == 429
            assert response.json() == {
                "data": None,
                "errors": [{"message": "Too many requests, wait a minute."}],
            }

    def test_windows_are_per_client_address(self, http):
        """Another address (X-Forwarded-For, as behind the load balancer) has its own window."""
        with LocalCollector(rate_limit=(1, 30)) as c:
            assert post(http, c, crumb()).status_code == 202
            assert post(http, c, crumb()).status_code == 429
            other = {"X-Forwarded-For": "10.0.0.7"}
            assert post(http, c, crumb(), headers=other).status_code == 202
            assert c.breadcrumbs()[-1]["client"] == "10.0.0.7"

    def test_rate_limit_can_be_set_and_removed_at_run_time(self, collector, http):
        """``set_rate_limit`` applies to the next request; None removes the limit."""
        collector.set_rate_limit((1, 30))
        assert post(http, collector, crumb()).status_code == 202
        assert post(http, collector, crumb()).status_code == 429
        collector.set_rate_limit(None)
        assert post(http, collector, crumb()).status_code == 202
        collector.set_rate_limit((1, 30))
        collector.reset()  # forgets the window
        assert post(http, collector, crumb()).status_code == 202


class TestGraphQL:
    """POST /graphql: queries, the mutation, errors, limits."""

    def test_check_project_with_literal_arguments(self, collector, http):
        """check_project answers the configured latest release; literal arguments work."""
        query = (
            '{ check_project(project: "nipreps/migas-logging", project_version: "1.0.0")'
            " { success flagged latest message } }"
        )
        response = gql(http, collector, query)
        assert response.status_code == 200
        assert response.json() == {
            "data": {
                "check_project": {
                    "success": True,
                    "flagged": False,
                    "latest": "1.4.0",
                    "message": "",
                }
            }
        }

    def test_check_project_with_variables_flags_bad_versions(self, collector, http):
        """A version listed in bad_versions is flagged; variables work."""
        query = (
            "query($p: String!, $v: String!) { check_project(project: $p, project_version: $v)"
            " { success flagged latest } }"
        )
        response = gql(http, collector, query, {"p": PROJECT, "v": "1.3.0"})
        assert response.json()["data"]["check_project"] == {
            "success": True,
            "flagged": True,
            "latest": "1.4.0",
        }

    def test_check_project_unconfigured_is_unsuccessful(self, collector, http):
        """Without a configured latest release: success false, latest 'unknown'."""
        query = 'query($p: String!) { check_project(project: $p, project_version: "1") '
        query += "{ success latest flagged message } }"
        response = gql(http, collector, query, {"p": OTHER})
        assert response.json()["data"]["check_project"] == {
            "success": False,
            "latest": "unknown",
            "flagged": False,
            "message": "",
        }

    def test_get_usage_counts_hits_and_unique_users(self, collector, http):
        """get_usage counts crumbs in [start, end]; unique counts distinct user ids."""
        user = str(uuid.uuid4())
        for _ in range(3):
            post(http, collector, crumb(ctx={"user_id": user}))
        post(http, collector, crumb())
        post(http, collector, crumb(project=OTHER))
        query = "query($p: String!, $s: DateTime!, $u: Boolean!) "
        query += "{ get_usage(project: $p, start: $s, unique: $u) }"
        today = time.strftime("%Y-%m-%d", time.gmtime())
        hits = gql(http, collector, query, {"p": PROJECT, "s": today, "u": False}).json()
        assert hits == {
            "data": {"get_usage": {"hits": 4, "message": "", "unique": False, "success": True}}
        }
        unique = gql(http, collector, query, {"p": PROJECT, "s": today, "u": True}).json()
        assert unique["data"]["get_usage"]["hits"] == 2

    def test_get_usage_with_literal_dates_outside_the_range(self, collector, http):
        """Literal dates in both formats work; crumbs outside [start, end] are not counted."""
        post(http, collector, crumb())
        query = '{ get_usage(project: "nipreps/migas-logging", start: "2024-01-01", '
        query += 'end: "2024-02-01T00:00:00Z", unique: false) }'
        response = gql(http, collector, query)
        assert response.json()["data"]["get_usage"]["hits"] == 0

    def test_get_usage_of_an_untracked_project(self, collector, http):
        """An untracked project: hits 0, success false, 'is not being tracked'."""
        query = '{ get_usage(project: "owner/repo", start: "2024-01-01", unique: true) }'
        assert gql(http, collector, query).json() == {
            "data": {
                "get_usage": {
                    "hits": 0,
                    "message": 'Project "owner/repo" is not being tracked',
                    "unique": True,
                    "success": False,
                }
            }
        }

    def test_selection_set_on_get_usage_is_an_error(self, collector, http):
        """get_usage returns a JSON scalar: a selection set is an error (HTTP 200)."""
        query = '{ get_usage(project: "nipreps/migas-logging", start: "2024-01-01") { hits } }'
        response = gql(http, collector, query)
        assert response.status_code == 200
        body = response.json()
        assert body["data"] is None
        assert "must not have a selection" in body["errors"][0]["message"]

    @pytest.mark.parametrize("as_variable", [False, True])
    def test_bad_date_is_an_invalid_isoformat_error(self, collector, http, as_variable):
        """A bad date answers an error containing 'Invalid isoformat string'."""
        if as_variable:
            query = 'query($s: DateTime!) { get_usage(project: "a/b", start: $s) }'
            response = gql(http, collector, query, {"s": "01/02/2024"})
        else:
            response = gql(http, collector, '{ get_usage(project: "a/b", start: "01/02/2024") }')
        assert response.status_code == 200
        body = response.json()
        assert body["data"] is None
        assert "Invalid isoformat string" in body["errors"][0]["message"]

    def test_get_projects_lists_registered_projects(self, collector, http):
        """get_projects lists the registered projects."""
        response = gql(http, collector, "{ get_projects }")
        assert response.json() == {"data": {"get_projects": sorted([PROJECT, OTHER])}}

    def test_add_breadcrumb_with_literal_arguments(self, collector, http):
        """The mutation with literal arguments (enum literal F, ``ctx: {}``) stores a crumb."""
        query = """mutation { add_breadcrumb(project: "nipreps/migas-logging",
            project_version: "2.0", language: "python", language_version: "3.12",
            ctx: {}, proc: {status: F, error_type: "KeyError", error_desc: "k"})
            { success message } }"""
        response = gql(http, collector, query)
        assert response.json() == {"data": {"add_breadcrumb": ACCEPTED}}
        row = only_row(collector)
        assert (row["status"], row["error_type"], row["via"]) == ("F", "KeyError", "graphql")
        assert (row["platform"], row["container"], row["user_type"]) == (None, None, None)

    def test_add_breadcrumb_with_variables(self, collector, http):
        """The mutation with variables stores every field given."""
        ids = {"user_id": str(uuid.uuid4()), "session_id": str(uuid.uuid4())}
        ctx = {**ids, "platform": "linux", "container": "docker", "is_ci": True}
        variables = {"project": PROJECT, "version": "2.0", "ctx": ctx, "proc": {"status": "S"}}
        response = gql(http, collector, ADD_BREADCRUMB, variables)
        assert response.json()["data"]["add_breadcrumb"] == ACCEPTED
        row = only_row(collector)
        assert (row["user_id"], row["session_id"]) == (ids["user_id"], ids["session_id"])
        assert (row["platform"], row["container"], row["is_ci"]) == ("linux", "docker", True)
        assert row["status"] == "S"

    def test_add_breadcrumb_stores_invalid_versions_as_sent(self, collector, http):
        """Unlike REST, the mutation stores an invalid version as sent."""
        variables = {"project": PROJECT, "version": "1.0 beta", "ctx": {}, "proc": {}}
        gql(http, collector, ADD_BREADCRUMB, variables)
        assert only_row(collector)["project_version"] == "1.0 beta"

    def test_add_breadcrumb_project_without_slash(self, collector, http):
        """A project without '/' answers success false with an empty message."""
        variables = {"project": "migas", "version": "1", "ctx": {}, "proc": {}}
        response = gql(http, collector, ADD_BREADCRUMB, variables)
        assert response.json()["data"]["add_breadcrumb"] == {"success": False, "message": ""}

    def test_add_breadcrumb_unregistered_project(self, collector, http):
        """An unregistered project answers 'Project is not yet registered.'"""
        variables = {"project": "a/b", "version": "1", "ctx": {}, "proc": {}}
        response = gql(http, collector, ADD_BREADCRUMB, variables)
        assert response.json()["data"]["add_breadcrumb"] == {
            "success": False,
            "message": "Project is not yet registered.",
        }
        assert collector.breadcrumbs() == []

    def test_add_breadcrumb_ingestion_failure_still_succeeds(self, collector, http):
        """The mutation answers success before ingesting: a bad user_id is lost silently."""
        variables = {"project": PROJECT, "version": "1", "ctx": {"user_id": "me"}, "proc": {}}
        response = gql(http, collector, ADD_BREADCRUMB, variables)
        assert response.json()["data"]["add_breadcrumb"] == ACCEPTED
        assert collector.breadcrumbs() == []
        assert collector.lost()[0]["via"] == "graphql"

    def test_status_as_a_string_literal_is_an_error(self, collector, http):
        """``status`` is an enum: the literal "F" (a string) is an error, data null."""
        query = """mutation { add_breadcrumb(project: "nipreps/migas-logging",
            project_version: "1", language: "python", language_version: "3",
            ctx: {}, proc: {status: "F"}) { success } }"""
        response = gql(http, collector, query)
        assert response.status_code == 200
        body = response.json()
        assert body["data"] is None
        assert body["errors"][0]["message"]
        assert collector.breadcrumbs() == []

    def test_missing_ctx_is_an_error(self, collector, http):
        """``ctx`` and ``proc`` are required arguments of the mutation."""
        query = """mutation { add_breadcrumb(project: "nipreps/migas-logging",
            project_version: "1", language: "python", language_version: "3",
            proc: {}) { success } }"""
        body = gql(http, collector, query).json()
        assert body["data"] is None
        assert "ctx" in body["errors"][0]["message"]

    def test_syntax_error_is_an_error_with_200(self, collector, http):
        """Errors come back as {"data": null, "errors": [{"message": ...}]} with HTTP 200."""
        response = gql(http, collector, "{ get_projects ")
        assert response.status_code == 200
        body = response.json()
        assert body["data"] is None
        assert body["errors"][0]["message"].startswith("Syntax Error")

    def test_size_limit_is_413_in_graphql_shape(self, collector, http):
        """A GraphQL body over the limit answers 413 with the GraphQL error shape."""
        query = "{ get_projects }" + " " * 2600
        response = gql(http, collector, query)
        size = len(json.dumps({"query": query}).encode())
        assert response.status_code == 413
        assert response.json() == {
            "data": None,
            "errors": [{"message": f"Request body ({size}) exceeds maximum size (2500)"}],
        }

    def test_unparsable_body_is_400(self, collector, http):
        """A body that is not JSON answers 400, as strawberry does."""
        response = http.post(
            collector.url + "/graphql", data=b"{", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.text == "Unable to parse request body as JSON"


class TestUsageEndpoint:
    """GET /api/usage/{owner}/{repo}?weeks=N with a bearer token."""

    def test_rows_for_the_projects_token(self, collector, http):
        """Rows are {date, version, status, count}: sessions counted by their latest crumb."""
        session = str(uuid.uuid4())
        post(http, collector, crumb(ctx={"session_id": session}, proc={"status": "R"}))
        post(http, collector, crumb(ctx={"session_id": session}, proc={"status": "C"}))
        post(http, collector, crumb(project_version="1.0.0", proc={"status": "F"}))
        response = http.get(
            collector.url + f"/api/usage/{PROJECT}?weeks=1",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.status_code == 200
        today = time.strftime("%Y-%m-%d", time.gmtime())
        assert sorted(response.json(), key=lambda r: r["version"]) == [
            {"date": today, "version": "1.0.0", "status": "F", "count": 1},
            {"date": today, "version": "1.2.3", "status": "C", "count": 1},
        ]

    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X": "y"}])
    def test_no_valid_token_is_401(self, collector, http, headers):
        """Without a valid token: 401."""
        response = http.get(collector.url + f"/api/usage/{PROJECT}", headers=headers)
        assert response.status_code == 401

    def test_another_projects_token_is_403(self, collector, http):
        """Another project's token: 403."""
        response = http.get(
            collector.url + f"/api/usage/{PROJECT}",
            headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
        )
        assert response.status_code == 403

    def test_unknown_project_is_404_for_a_master_token(self, http):
        """An unknown project: 404, to a master token (any other token gets 403 first)."""
        with LocalCollector(tokens={"master": "root"}) as c:
            response = http.get(
                c.url + "/api/usage/nobody/nothing", headers={"Authorization": "Bearer root"}
            )
            assert response.status_code == 404
            assert response.json() == {"detail": "Project nobody/nothing not found."}
            response = http.get(
                c.url + f"/api/usage/{PROJECT}", headers={"Authorization": "Bearer root"}
            )
            assert (response.status_code, response.json()) == (200, [])


class TestConnections:
    """Keep-alive, throughput, concurrency, other processes."""

    def test_keep_alive_serves_several_requests_on_one_connection(self, collector):
        """Several requests on one HTTP/1.1 connection are all answered on it."""
        conn = HTTPConnection("127.0.0.1", collector.port, timeout=5)
        body = json.dumps(crumb()).encode()
        try:
            for _ in range(3):
                conn.request("POST", "/api/breadcrumb", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                assert response.status == 202
                assert json.loads(response.read()) == ACCEPTED
                assert response.getheader("Connection") != "close"
            conn.request("GET", "/nowhere")
            assert conn.getresponse().status == 404
        finally:
            conn.close()
        records = collector.requests()
        assert len(records) == 4
        assert len({r.connection for r in records}) == 1
        assert len({r.client_port for r in records}) == 1

    def test_keep_alive_throughput(self, collector, http):
        """A keep-alive client gets far more than 25 answers/s (no Nagle/delayed-ACK stall)."""
        body = crumb()
        start = time.perf_counter()
        for _ in range(200):
            assert post(http, collector, body).status_code == 202
        elapsed = time.perf_counter() - start
        assert elapsed < 2.0, f"{200 / elapsed:.0f} answers/s"
        assert len({r.connection for r in collector.requests()}) == 1

    def test_concurrent_clients_are_all_stored(self, collector):
        """Eight threads posting at once: every crumb stored, every seq distinct."""
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                with requests.Session() as session:
                    for i in range(25):
                        body = crumb(proc={"status_desc": f"{n}-{i}"})
                        assert post(session, collector, body).status_code == 202
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        rows = collector.wait_for(200, timeout=5)
        assert len(rows) == 200
        assert len({r["seq"] for r in rows}) == 200
        assert len({r["status_desc"] for r in rows}) == 200

    def test_client_in_another_process(self, collector):
        """A client process (like an app under crash tests) reaches the collector."""
        code = (
            "import json, sys, urllib.request\n"
            "req = urllib.request.Request(sys.argv[1] + '/api/breadcrumb?wait=true',"
            " data=sys.argv[2].encode(), headers={'Content-Type': 'application/json'})\n"
            "print(urllib.request.urlopen(req, timeout=5).status)\n"
        )
        body = json.dumps(crumb(proc={"status": "F"}))
        result = subprocess.run(
            [sys.executable, "-c", code, collector.url, body],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert result.stdout.strip() == "200"
        assert only_row(collector)["status"] == "F"

    def test_serve_forever_in_another_process_stops_on_sigterm(self, tmp_path):
        """serve_forever (the CLI's server) serves from another process; SIGTERM stops it."""
        code = (
            "import sys\n"
            "from migas_logging.collector import serve_forever\n"
            "serve_forever(port=0, db=sys.argv[1], register=['nipreps/migas-logging'],\n"
            "              ready=lambda c: print(c.url, flush=True))\n"
        )
        db = tmp_path / "served.sqlite"
        paths = [str(_repo_root()), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
        with subprocess.Popen(
            [sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True, env=env
        ) as proc:
            try:
                assert proc.stdout is not None
                url = proc.stdout.readline().strip()
                assert url.startswith("http://127.0.0.1:")
                response = requests.post(url + "/api/breadcrumb", json=crumb(), timeout=5)
                assert response.status_code == 202
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=5) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
        with LocalCollector(db=str(db)) as reopened:
            assert len(reopened.breadcrumbs()) == 1

    def test_refused_port(self):
        """free_port() gives a port nobody listens on: connections are refused."""
        port = free_port()
        with pytest.raises(requests.ConnectionError):
            requests.post(f"http://127.0.0.1:{port}/api/breadcrumb", json={}, timeout=2)


def _repo_root() -> Path:
    import migas_logging.pytest_plugin as plugin

    return Path(plugin.__file__).resolve().parents[1]


def _send_in_thread(
    url: str, body: Any, results: list[Any], timeout: float = 10
) -> threading.Thread:
    """POST in a background thread; the response or the exception lands in ``results``."""

    def run() -> None:
        try:
            results.append(requests.post(url, json=body, timeout=timeout))
        except requests.RequestException as exc:
            results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class TestFaults:
    """collector.fault(kind, ...) on the breadcrumb and GraphQL endpoints."""

    def test_fault_kinds(self):
        """The fault kinds are the documented ones; others are refused."""
        assert frozenset({"delay", "hang", "status", "garbage", "close"}) == FAULT_KINDS
        with LocalCollector() as c:
            with pytest.raises(ValueError, match="unknown fault"):
                c.fault("explode")
            with pytest.raises(ValueError, match="takes no"):
                c.fault("hang", seconds=1)

    def test_delay_then_normal_answer(self, collector, http):
        """``delay`` waits ``seconds`` and then answers normally."""
        collector.fault("delay", seconds=0.3)
        start = time.perf_counter()
        response = post(http, collector, crumb())
        assert time.perf_counter() - start >= 0.3
        assert response.status_code == 202
        assert len(collector.breadcrumbs()) == 1

    def test_hang_never_answers_and_stop_is_prompt(self, http):
        """``hang`` reads the request and never answers; stop() closes it promptly."""
        c = LocalCollector().start()
        try:
            c.fault("hang")
            results: list[Any] = []
            thread = _send_in_thread(c.url + "/api/breadcrumb", crumb(), results)
            (record,) = c.wait_for_requests(1, timeout=5)
            assert record.fault == "hang"
            time.sleep(0.2)
            assert results == []  # still no answer
        finally:
            start = time.monotonic()
            c.stop()
            stopped_in = time.monotonic() - start
        assert stopped_in < 2.0
        thread.join(5)
        assert len(results) == 1
        assert isinstance(results[0], requests.ConnectionError)
        assert c.breadcrumbs() == []
        assert c.requests()[0].status is None

    def test_clearing_a_hang_answers_held_requests(self, collector):
        """clear_fault() releases hanging requests, which are then answered normally."""
        collector.fault("hang")
        results: list[Any] = []
        thread = _send_in_thread(collector.url + "/api/breadcrumb", crumb(), results)
        collector.wait_for_requests(1, timeout=5)
        collector.clear_fault()
        thread.join(5)
        assert [r.status_code for r in results] == [202]
        assert len(collector.breadcrumbs()) == 1

    @pytest.mark.parametrize(
        ("status", "content_type", "expected"),
        [
            (500, "text/plain; charset=utf-8", "Internal Server Error"),
            (503, "text/html; charset=utf-8", "503 Service Unavailable"),
            (400, "application/json", {"detail": "Project is not registered."}),
            (422, "application/json", "Field required"),
            (429, "application/json", TOO_MANY),
        ],
    )
    def test_status_fault_answers_a_plausible_body(
        self, collector, http, status, content_type, expected
    ):
        """``status`` answers that status with a body like the real deployment's."""
        collector.fault("status", status=status)
        response = post(http, collector, crumb())
        assert response.status_code == status
        assert response.headers["Content-Type"] == content_type
        assert response.headers["X-Backend-Server"] == "migas@0.9"
        if isinstance(expected, dict):
            assert response.json() == expected
        else:
            assert expected in response.text
        assert collector.breadcrumbs() == []

    def test_status_413_fault_reports_the_body_size(self, collector, http):
        """A 413 fault says the body's real size, like the server."""
        collector.fault("status", status=413)
        body = crumb()
        response = post(http, collector, body)
        size = len(json.dumps(body).encode())
        assert response.status_code == 413
        assert response.json() == {"detail": f"Request body ({size}) exceeds maximum size (2500)"}

    def test_status_fault_with_custom_body_and_headers(self, collector, http):
        """``body`` and ``headers`` override the default (e.g. a Retry-After)."""
        collector.fault(
            "status", status=429, body={"detail": "slow"}, headers={"Retry-After": "2"}
        )
        response = post(http, collector, crumb())
        assert response.status_code == 429
        assert response.json() == {"detail": "slow"}
        assert response.headers["Retry-After"] == "2"

    def test_status_fault_on_graphql_uses_the_graphql_shape(self, collector, http):
        """On /graphql a 429 fault answers in GraphQL's error shape."""
        collector.fault("status", status=429)
        response = gql(http, collector, "{ get_projects }")
        assert response.status_code == 429
        assert response.json() == {"data": None, "errors": [{"message": TOO_MANY["detail"]}]}

    @pytest.mark.parametrize(("endpoint", "status"), [("rest", 202), ("graphql", 200)])
    def test_garbage_answers_a_non_json_body(self, collector, http, endpoint, status):
        """``garbage`` answers a success status with a body that is not JSON."""
        collector.fault("garbage")
        if endpoint == "rest":
            response = post(http, collector, crumb())
        else:
            response = gql(http, collector, "{ get_projects }")
        assert response.status_code == status
        with pytest.raises(ValueError):
            response.json()
        assert collector.breadcrumbs() == []

    @pytest.mark.parametrize("reset", [False, True])
    def test_close_cuts_the_answer(self, collector, http, reset):
        """``close`` sends part of a status line and closes: the client gets an error."""
        collector.fault("close", reset=reset)
        for _ in range(2):  # the fault stays until cleared
            with pytest.raises(requests.ConnectionError):
                post(http, collector, crumb())
        collector.clear_fault()
        assert post(http, collector, crumb()).status_code == 202

    def test_count_limits_the_fault_to_the_next_requests(self, collector, http):
        """``count=2`` faults the next two requests only."""
        collector.fault("status", status=503, count=2)
        statuses = [post(http, collector, crumb()).status_code for _ in range(3)]
        assert statuses == [503, 503, 202]
        assert [r.fault for r in collector.requests()] == ["status", "status", None]

    def test_endpoint_limits_the_fault(self, collector, http):
        """``endpoint='rest'`` leaves GraphQL alone (for fallback tests)."""
        collector.fault("status", status=500, endpoint="rest")
        assert post(http, collector, crumb()).status_code == 500
        assert gql(http, collector, "{ get_projects }").status_code == 200

    def test_faults_spare_the_debug_endpoints(self, collector, http):
        """Faults apply to /api/breadcrumb and /graphql only."""
        collector.fault("status", status=500)
        assert http.get(collector.url + "/_collector/stats").status_code == 200


class TestCollectorAPI:
    """The Python API: reading what arrived, waiting, resetting, storage."""

    def test_wait_for_returns_once_rows_arrive(self, collector):
        """wait_for blocks until the count is reached by another thread's request."""
        timer = threading.Timer(
            0.2, lambda: requests.post(collector.url + "/api/breadcrumb", json=crumb(), timeout=5)
        )
        timer.start()
        rows = collector.wait_for(1, timeout=5)
        timer.join()
        assert len(rows) == 1

    def test_wait_for_times_out_with_what_it_has(self, collector, http):
        """wait_for raises TimeoutError naming what was stored."""
        post(http, collector, crumb())
        with pytest.raises(TimeoutError, match="1 stored"):
            collector.wait_for(2, timeout=0.2)

    def test_wait_for_says_what_was_refused_and_how_to_register(self, collector, http):
        """A timeout names the refusals: status, reason, project, and how to register."""
        post(http, collector, crumb(project="myorg/mytool"))
        post(http, collector, crumb(project="myorg/mytool"))
        with pytest.raises(TimeoutError) as caught:
            collector.wait_for(1, timeout=0.2)
        message = str(caught.value)
        assert (
            "the collector REFUSED 2 breadcrumb(s): 2 answered 400 'Project is not registered.' "
            "for project 'myorg/mytool' (register myorg/mytool: collector.register('owner/repo')"
        ) in message
        assert "migas_register" in message

    def test_refused_lists_refusals_of_both_endpoints(self, collector, http):
        """refused(): REST 4xx answers and GraphQL mutations for unregistered projects."""
        post(http, collector, crumb(project="myorg/mytool"))
        post(http, collector, crumb(proc={"status": "X"}))
        variables = {"project": "some/one", "version": "1", "ctx": {}, "proc": {}}
        gql(http, collector, ADD_BREADCRUMB, variables)
        refused = collector.refused()
        assert [(r["project"], r["status"], r["via"]) for r in refused] == [
            ("myorg/mytool", 400, "rest"),
            (PROJECT, 422, "rest"),
            ("some/one", None, "graphql"),
        ]
        assert refused[1]["reason"].startswith("body.proc.status: Input should be")
        assert [r["project"] for r in collector.refused(project="some/one")] == ["some/one"]
        assert http.get(collector.url + "/_collector/refused").json() == refused
        assert collector.stats()["refused"] == 3
        collector.reset()
        assert collector.refused() == []

    def test_filters_by_status_and_after(self, collector, http):
        """breadcrumbs(status=) and /_collector/breadcrumbs?status=&after= filter."""
        for status in ("R", "F", "R"):
            post(http, collector, crumb(proc={"status": status}), wait=True)
        assert [r["seq"] for r in collector.breadcrumbs(status="R")] == [1, 3]
        url = collector.url + "/_collector/breadcrumbs"
        assert [r["seq"] for r in http.get(url, params={"after": 1}).json()] == [2, 3]
        answer = http.get(url, params={"after": 1, "status": "R"}).json()
        assert [r["seq"] for r in answer] == [3]
        assert http.get(url, params={"after": "x"}).status_code == 422

    def test_filters_by_project_and_session(self, collector, http):
        """breadcrumbs() filters by project and by session id."""
        session = str(uuid.uuid4())
        post(http, collector, crumb(ctx={"session_id": session}))
        post(http, collector, crumb())
        post(http, collector, crumb(project=OTHER))
        assert len(collector.breadcrumbs(project=PROJECT)) == 2
        assert len(collector.breadcrumbs(session_id=session.upper())) == 1
        assert len(collector.wait_for(1, project=OTHER)) == 1

    def test_requests_are_recorded(self, collector, http):
        """requests() has method, path, status, headers, body and client of each request."""
        post(http, collector, crumb(), wait=True)
        (record,) = collector.requests()
        assert (record.method, record.path, record.status) == (
            "POST",
            "/api/breadcrumb?wait=true",
            200,
        )
        assert record.headers["Content-Type"] == "application/json"
        assert record.json()["project"] == PROJECT
        assert record.client == "127.0.0.1"

    def test_reset_forgets_everything_received(self, collector, http):
        """reset() forgets rows, lost crumbs and requests; projects stay registered."""
        post(http, collector, crumb())
        post(http, collector, crumb(language="l" * 40))
        collector.reset()
        assert (collector.breadcrumbs(), collector.lost(), collector.requests()) == ([], [], [])
        assert post(http, collector, crumb()).status_code == 202

    def test_register_at_run_time(self, collector, http):
        """register() makes a project's crumbs accepted, with check_project settings."""
        assert post(http, collector, crumb(project="new/one")).status_code == 400
        collector.register("new/one", latest="0.2", bad_versions=["0.1"])
        assert post(http, collector, crumb(project="new/one")).status_code == 202
        query = '{ check_project(project: "new/one", project_version: "0.1") { flagged latest } }'
        assert gql(http, collector, query).json()["data"]["check_project"] == {
            "flagged": True,
            "latest": "0.2",
        }

    def test_debug_endpoints(self, collector, http):
        """/_collector/breadcrumbs lists stored rows; /_collector/stats counts."""
        post(http, collector, crumb())
        post(http, collector, crumb(language="l" * 40))
        rows = http.get(collector.url + "/_collector/breadcrumbs").json()
        assert rows == collector.breadcrumbs()
        lost = http.get(collector.url + "/_collector/lost").json()
        assert len(lost) == 1
        stats = http.get(collector.url + "/_collector/stats").json()
        assert (stats["stored"], stats["lost"]) == (1, 1)
        assert stats["by_status"] == {"202": 2, "200": 2}

    def test_sqlite_file_keeps_rows_across_runs(self, tmp_path, http):
        """With db=<file>, rows survive a restart and seq keeps growing."""
        db = str(tmp_path / "crumbs.sqlite")
        with LocalCollector(db=db) as first:
            post(http, first, crumb())
        with LocalCollector(db=db, register=()) as second:
            assert post(http, second, crumb()).status_code == 202  # still registered
            rows = second.breadcrumbs()
        assert [r["seq"] for r in rows] == [1, 2]

    def test_sqlite_file_of_an_older_collector_is_migrated(self, tmp_path, http):
        """A file whose user_type was NOT NULL keeps its rows and takes crumbs without users."""
        import sqlite3

        db = str(tmp_path / "old.sqlite")
        old = sqlite3.connect(db)
        old.executescript(
            """CREATE TABLE breadcrumbs (id INTEGER PRIMARY KEY AUTOINCREMENT,
            seq INTEGER NOT NULL UNIQUE, timestamp TEXT NOT NULL, project TEXT NOT NULL,
            project_version TEXT NOT NULL, language TEXT NOT NULL,
            language_version TEXT NOT NULL, user_id TEXT, session_id TEXT,
            user_type TEXT NOT NULL, platform TEXT, container TEXT, is_ci INTEGER NOT NULL,
            status TEXT NOT NULL, status_desc TEXT, error_type TEXT, error_desc TEXT,
            via TEXT NOT NULL, client TEXT);
            INSERT INTO breadcrumbs (seq, timestamp, project, project_version, language,
            language_version, user_type, is_ci, status, via) VALUES (1,
            '2024-01-01T00:00:00Z', 'nipreps/migas-logging', '1.0', 'python', '3.11',
            'general', 0, 'C', 'rest');"""
        )
        old.close()
        with LocalCollector(db=db) as c:
            body = crumb(ctx={"user_id": None})
            assert post(http, c, body, wait=True).status_code == 200
            rows = c.breadcrumbs()
        assert [(r["seq"], r["user_type"]) for r in rows] == [(1, "general"), (2, None)]

    def test_restart_serves_on_the_same_port(self, http):
        """stop() then start() serves again on the same port (a server coming back)."""
        c = LocalCollector().start()
        url = c.url
        c.stop()
        with pytest.raises(requests.ConnectionError):
            post(http, c, crumb())
        c.start()
        try:
            assert c.url == url
            assert post(http, c, crumb()).status_code == 202
        finally:
            c.stop()

    def test_stop_closes_idle_keep_alive_connections(self):
        """stop() is prompt and closes keep-alive connections left idle by clients."""
        c = LocalCollector().start()
        conn = HTTPConnection("127.0.0.1", c.port, timeout=5)
        try:
            conn.request("GET", "/_collector/stats")
            assert conn.getresponse().read()
            start = time.monotonic()
            c.stop()
            assert time.monotonic() - start < 2.0
            assert conn.sock is not None
            assert conn.sock.recv(1) == b""  # closed by the server
        finally:
            conn.close()


class TestPytestPlugin:
    """The fixtures of migas_logging.pytest_plugin."""

    def test_migas_collector_fixture(self, migas_collector):  # noqa: F811 - the fixture
        """migas_collector is started, registers the project and sets MIGAS_ENDPOINT."""
        assert os.environ["MIGAS_ENDPOINT"] == migas_collector.url
        assert "MIGAS_OPTOUT" not in os.environ
        response = requests.post(
            os.environ["MIGAS_ENDPOINT"] + "/api/breadcrumb", json=crumb(), timeout=5
        )
        assert response.status_code == 202
        assert len(migas_collector.wait_for(1)) == 1

    def test_factory_fixture(self, migas_collector_factory):  # noqa: F811 - the fixture
        """migas_collector_factory starts collectors with the given options."""
        old = migas_collector_factory(rest=False, register=("a/b",))
        assert requests.post(old.url + "/api/breadcrumb", json={}, timeout=5).status_code == 404
        assert old.running

    def test_plugin_in_a_pytest_run(self, pytester, monkeypatch):
        """Loaded with -p, the plugin's fixtures work and the collector is stopped after."""
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        monkeypatch.setenv("MIGAS_OPTOUT", "1")
        paths = [str(_repo_root()), os.environ.get("PYTHONPATH", "")]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))
        pytester.makepyfile(
            """
            import json, os, urllib.request

            seen = []

            def test_uses_it(migas_collector):
                assert "MIGAS_OPTOUT" not in os.environ
                req = urllib.request.Request(
                    os.environ["MIGAS_ENDPOINT"] + "/api/breadcrumb?wait=true",
                    data=json.dumps({"project": "nipreps/migas-logging",
                                     "project_version": "1.0"}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                assert urllib.request.urlopen(req, timeout=5).status == 200
                assert len(migas_collector.breadcrumbs()) == 1
                seen.append(migas_collector)

            def test_stopped_after(migas_collector_factory):
                assert not seen[0].running
                assert migas_collector_factory(port=0).running
            """
        )
        result = pytester.runpytest_subprocess("-p", "migas_logging.pytest_plugin")
        result.assert_outcomes(passed=2)

    def _run_plugin(self, pytester, monkeypatch, ini: str) -> Any:
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        paths = [str(_repo_root()), os.environ.get("PYTHONPATH", "")]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))
        pytester.makeini(ini)
        pytester.makepyfile(
            """
            import json, os, urllib.error, urllib.request

            def test_my_project(migas_collector):
                req = urllib.request.Request(
                    os.environ["MIGAS_ENDPOINT"] + "/api/breadcrumb",
                    data=json.dumps({"project": "myorg/mytool",
                                     "project_version": "1.0"}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                try:
                    urllib.request.urlopen(req, timeout=5)
                except urllib.error.HTTPError:
                    pass  # a client never raises: it would count the refusal
                assert len(migas_collector.wait_for(1, timeout=1)) == 1
            """
        )
        return pytester.runpytest_subprocess("-p", "migas_logging.pytest_plugin")

    def test_migas_register_ini_option(self, pytester, monkeypatch):
        """``migas_register`` in the ini file registers the project under test."""
        result = self._run_plugin(
            pytester, monkeypatch, "[pytest]\nmigas_register = myorg/mytool\n"
        )
        result.assert_outcomes(passed=1)

    def test_unregistered_project_fails_saying_so(self, pytester, monkeypatch):
        """Without it, wait_for fails saying the server answered 400 and how to register."""
        result = self._run_plugin(pytester, monkeypatch, "[pytest]\n")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                (
                    "*REFUSED 1 breadcrumb(s): 1 answered 400 'Project is not registered.'*"
                    "*myorg/mytool*migas_register = owner/repo*"
                )
            ]
        )

    def test_migas_register_bad_name_is_a_usage_error(self, pytester, monkeypatch):
        """A name that is not owner/repo fails loudly, naming the option."""
        result = self._run_plugin(pytester, monkeypatch, "[pytest]\nmigas_register = fmriprep\n")
        result.stdout.fnmatch_lines(["*migas_register: project 'fmriprep' is not of the form*"])
        assert result.ret != 0
