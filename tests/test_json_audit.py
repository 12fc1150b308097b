"""python-json-logger: coexistence, message="json", and the audit trail."""

from __future__ import annotations

import io
import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pythonjsonlogger.json import JsonFormatter

from migas_logging import MigasHandler, client
from migas_logging.collector import LocalCollector

PROJECT = "nipreps/migas-logging"


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(register=(PROJECT,)) as c:
        yield c


@pytest.fixture
def log(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    logger = logging.getLogger(f"json.{request.node.name}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    for h in logger.handlers[:]:
        logger.removeHandler(h)
        h.close()


def migas(collector: LocalCollector, log: logging.Logger, **options: Any) -> MigasHandler:
    options.setdefault("excepthook", False)
    options.setdefault("rate_limit", None)
    h = MigasHandler(PROJECT, "1.0.0", endpoint=collector.url, **options)
    log.addHandler(h)
    return h


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class TestCoexistence:
    def test_json_formatter_output_unchanged(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """A JsonFormatter on another handler renders extras and reserved fields as before."""
        out = io.StringIO()
        console = logging.StreamHandler(out)
        console.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
        log.addHandler(console)
        log.error("step %s failed", "bold", extra={"subject": "sub-01", "count": 3})
        before = out.getvalue()
        out.truncate(0)
        out.seek(0)
        h = migas(collector, log, message="json", extras=["subject"])
        log.removeHandler(console)
        log.addHandler(console)  # after ours: sees the record ours has seen
        log.error("step %s failed", "bold", extra={"subject": "sub-01", "count": 3})
        h.flush(5)
        assert json.loads(before) == json.loads(out.getvalue())
        assert {
            "levelname": "ERROR",
            "name": log.name,
            "message": "step bold failed",
            "subject": "sub-01",
            "count": 3,
        } == json.loads(out.getvalue())


class TestJsonMessage:
    def test_status_desc_is_compact_json_of_template_and_named_extras(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """message='json': logger, template and only the named extras, as JSON."""
        h = migas(collector, log, message="json", extras=["subject", "count"])
        log.error("step %s failed", "bold", extra={"subject": "sub-01", "count": 3, "secret": "x"})
        h.flush(5)
        (row,) = collector.breadcrumbs()
        assert {
            "logger": log.name,
            "message": "step %s failed",
            "subject": "sub-01",
            "count": 3,
        } == json.loads(row["status_desc"])

    def test_huge_values_still_valid_json_within_the_limit(
        self, collector: LocalCollector, log: logging.Logger
    ) -> None:
        """Huge templates and extras are shortened so the JSON stays valid and fits."""
        h = migas(collector, log, message="json", extras=["blob"])
        try:
            raise ValueError("e" * 50_000)
        except ValueError:
            log.exception("x" * 100_000, extra={"blob": "y" * 100_000})
        h.flush(5)
        (row,) = collector.breadcrumbs()
        parsed = json.loads(row["status_desc"])
        assert parsed["message"].startswith("xxx")
        assert all(len(r.body) <= 2500 for r in collector.requests())

    def test_json_desc_is_redacted(self, collector: LocalCollector, log: logging.Logger) -> None:
        """Redaction applies inside the JSON too."""
        h = migas(collector, log, message="json", extras=["where"])
        log.error("failed", extra={"where": "/home/alice/x.nii"})
        h.flush(5)
        assert "<path>" == json.loads(collector.breadcrumbs()[0]["status_desc"])["where"]


class TestAuditTrail:
    def test_matches_what_arrived_and_what_was_dropped(
        self, collector: LocalCollector, log: logging.Logger, tmp_path: Path
    ) -> None:
        """Line by line: one sent line per stored crumb, one dropped line per drop."""
        path = tmp_path / "audit.jsonl"
        h = migas(collector, log, audit_file=str(path), rate_limit="3/60", fold_window=0)
        for i in range(5):
            log.error(f"distinct {i}")
        h.flush(5)
        collector.fault("status", status=422, count=1)
        client.current_client().worker.admission.rate_cap = None  # type: ignore[union-attr]
        log.error("refused one")
        h.flush(5)
        client.current_client().stop(2)  # type: ignore[union-attr]
        lines = audit_lines(path)
        sent = [x for x in lines if x["event"] == "sent"]
        dropped = [x for x in lines if x["event"] == "dropped"]
        stored = collector.breadcrumbs()
        assert [s["proc"]["status_desc"] for s in [x["breadcrumb"] for x in sent]] == [
            r["status_desc"] for r in stored
        ]
        assert [x["breadcrumb"] for x in sent] == [
            json.loads(r.body) for r in collector.requests() if r.status == 202
        ]
        reasons = sorted(x["reason"] for x in dropped)
        assert ["rate_cap", "rate_cap", "server_refused"] == reasons
        stats = h.stats.as_dict()
        assert stats["sent"] == len(sent)
        assert sum(stats["dropped"].values()) == len(dropped)
        refused = next(x for x in dropped if x["reason"] == "server_refused")
        assert f"{log.name}: refused one" == refused["breadcrumb"]["proc"]["status_desc"]
        assert all("time" in x for x in lines)

    def test_file_mode_0600_and_bounded(self, tmp_path: Path) -> None:
        """The file is private and rotates at its size bound."""
        from migas_logging._audit import AuditTrail

        path = tmp_path / "a.jsonl"
        trail = AuditTrail(str(path), max_bytes=2000)
        for i in range(100):
            trail.dropped("rate_cap", {"n": i, "pad": "x" * 50})
        trail.close()
        assert 0o600 == stat.S_IMODE(path.stat().st_mode)
        assert path.stat().st_size <= 2000
        backup = Path(str(path) + ".1")
        assert backup.exists()
        assert 0o600 == stat.S_IMODE(backup.stat().st_mode)
        assert not Path(str(path) + ".2").exists()

    def test_environment_variable(
        self,
        collector: LocalCollector,
        log: logging.Logger,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """MIGAS_AUDIT_FILE turns the audit trail on."""
        path = tmp_path / "env.jsonl"
        monkeypatch.setenv("MIGAS_AUDIT_FILE", str(path))
        h = migas(collector, log)
        log.error("x")
        h.flush(5)
        client.current_client().stop(1)  # type: ignore[union-attr]
        assert ["sent"] == [x["event"] for x in audit_lines(path)]

    def test_optout_writes_nothing(
        self,
        collector: LocalCollector,
        log: logging.Logger,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Under opt-out the audit file is not even created."""
        monkeypatch.setenv("MIGAS_OPTOUT", "1")
        path = tmp_path / "none.jsonl"
        h = migas(collector, log, audit_file=str(path))
        log.error("x")
        h.flush(1)
        assert not path.exists()
        assert [] == collector.requests()
