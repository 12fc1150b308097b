"""pytest fixtures that run a local migas collector (registered as a ``pytest11`` plugin).

Nothing heavy is imported here: the collector (and graphql-core, the optional extra
``migas-logging[collector]`` it needs) is imported only when a test asks for one of the
fixtures, so merely having ``migas-logging`` installed never slows down or breaks
anyone's pytest run.

The ini option ``migas_register`` names the projects (``owner/repo``, separated by spaces
or lines) that the ``migas_collector`` fixture registers besides
``nipreps/migas-logging``: a collector refuses the breadcrumbs of any other project, as
a real server does::

    [pytest]
    migas_register = myorg/mytool
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from migas_logging.collector import LocalCollector

__all__ = ["migas_collector", "migas_collector_factory"]

_DEFAULT_PROJECT = "nipreps/migas-logging"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ini option ``migas_register``."""
    parser.addini(
        "migas_register",
        type="args",
        default=[],
        help="projects (owner/repo) the migas_collector fixture registers, besides "
        f"{_DEFAULT_PROJECT}",
    )


def _projects_to_register(config: pytest.Config) -> list[str]:
    """The ``migas_register`` projects, checked (a bad name is a usage error)."""
    from migas_logging.config import checked_project
    from migas_logging.exceptions import ConfigurationError

    try:
        names = config.getini("migas_register")
    except ValueError:  # the fixtures imported without the plugin: no ini option
        return []
    try:
        return [checked_project(name) for name in names]
    except ConfigurationError as exc:
        raise pytest.UsageError(f"migas_register: {exc}") from None


@pytest.fixture
def migas_collector_factory() -> Iterator[Callable[..., LocalCollector]]:
    """Start local migas collectors on demand; all are stopped after the test.

    The fixture's value is a callable that takes the keyword arguments of
    :class:`migas_logging.collector.LocalCollector` and returns a started collector.
    It does not touch the environment: point your client at ``collector.url`` yourself.
    Use it for several servers in one test, or for options such as ``rate_limit``,
    ``rest=False`` (an older server), ``latest``/``bad_versions`` or ``db=<file>``::

        def test_old_server(migas_collector_factory):
            old = migas_collector_factory(rest=False)
            ...

    Needs ``migas-logging[collector]`` (graphql-core).
    """
    from migas_logging import client
    from migas_logging.collector import LocalCollector

    # One process sends to one server: give this test's collectors a fresh pipeline,
    # and do not leave ours to the next test.
    client.reset()
    started: list[LocalCollector] = []

    def factory(**kwargs: Any) -> LocalCollector:
        collector = LocalCollector(**kwargs)
        started.append(collector)
        return collector.start()

    yield factory
    client.reset()
    for collector in reversed(started):
        collector.stop()


@pytest.fixture
def migas_collector(
    migas_collector_factory: Callable[..., LocalCollector],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> LocalCollector:
    """A started local migas collector, with ``MIGAS_ENDPOINT`` pointing at it.

    The projects of the ini option ``migas_register`` and ``nipreps/migas-logging`` are
    registered; register others with ``migas_collector.register("owner/repo")``. Like a
    real server, it refuses every other project, and answers ``429`` past 1,000
    requests a minute. If ``wait_for`` times out, its message says what the collector
    refused, and why. ``MIGAS_ENDPOINT`` is set to
    ``migas_collector.url`` and ``MIGAS_OPTOUT`` is removed for the test's duration; the
    collector is stopped afterwards. The process's delivery pipeline is reset before and
    after the test, so handlers made in the test send to this collector. Read what
    arrived with ``breadcrumbs()``, ``wait_for(n)``, ``lost()`` and ``requests()``; make
    it misbehave with
    ``fault(...)``::

        def test_crash_is_reported(migas_collector):
            run_my_app()
            (crumb,) = migas_collector.wait_for(1)
            assert crumb["status"] == "F"

    Needs ``migas-logging[collector]`` (graphql-core).
    """
    register = [_DEFAULT_PROJECT, *_projects_to_register(request.config)]
    collector = migas_collector_factory(register=tuple(dict.fromkeys(register)))
    monkeypatch.setenv("MIGAS_ENDPOINT", collector.url)
    monkeypatch.delenv("MIGAS_OPTOUT", raising=False)
    return collector
