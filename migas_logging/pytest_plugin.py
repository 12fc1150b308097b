"""pytest fixtures that run a local migas collector (registered as a ``pytest11`` plugin).

Nothing heavy is imported here: the collector (and graphql-core, the optional extra
``migas-logging[collector]`` it needs) is imported only when a test asks for one of the
fixtures, so merely having ``migas-logging`` installed never slows down or breaks
anyone's pytest run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from migas_logging.collector import LocalCollector

__all__ = ["migas_collector", "migas_collector_factory"]


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
    migas_collector_factory: Callable[..., LocalCollector], monkeypatch: pytest.MonkeyPatch
) -> LocalCollector:
    """A started local migas collector, with ``MIGAS_ENDPOINT`` pointing at it.

    The project ``nipreps/migas-logging`` is registered; register others with
    ``migas_collector.register("owner/repo")``. ``MIGAS_ENDPOINT`` is set to
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
    collector = migas_collector_factory()
    monkeypatch.setenv("MIGAS_ENDPOINT", collector.url)
    monkeypatch.delenv("MIGAS_OPTOUT", raising=False)
    return collector
