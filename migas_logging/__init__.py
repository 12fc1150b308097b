"""migas-logging: an application's logging and crashes as telemetry for a migas server.

The public API is re-exported here. Submodules are imported on first use, so that
``import migas_logging`` costs next to nothing at interpreter start: ``requests`` in
particular is imported only when the first breadcrumb is sent.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from migas_logging._version import __version__

if TYPE_CHECKING:
    from migas_logging.breadcrumb import Breadcrumb, Context
    from migas_logging.client import configure
    from migas_logging.config import Settings, export_session_id
    from migas_logging.excepthook import install_excepthook
    from migas_logging.handler import MigasHandler
    from migas_logging.ledger import Stats
    from migas_logging.query import check_project, get_usage
    from migas_logging.tracking import track

__all__ = [
    "Breadcrumb",
    "Context",
    "MigasHandler",
    "Settings",
    "Stats",
    "__version__",
    "check_project",
    "configure",
    "export_session_id",
    "get_usage",
    "install_excepthook",
    "track",
]

_LAZY = {
    "Breadcrumb": "migas_logging.breadcrumb",
    "Context": "migas_logging.breadcrumb",
    "MigasHandler": "migas_logging.handler",
    "Settings": "migas_logging.config",
    "Stats": "migas_logging.ledger",
    "check_project": "migas_logging.query",
    "configure": "migas_logging.client",
    "export_session_id": "migas_logging.config",
    "get_usage": "migas_logging.query",
    "install_excepthook": "migas_logging.excepthook",
    "track": "migas_logging.tracking",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'migas_logging' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
