"""Benchmarks of migas-logging against the alternatives.

Run them all with ``python -m benchmarks`` (``--quick`` for a short smoke run,
``--only NAME`` for one of them, ``--out DIR`` for where the results go). See
``docs/performance.md`` for the method and the results of a full run.

Every measurement runs in a fresh subprocess, against a local collector (and a local
sink for sentry-sdk's envelopes) that runs in another process: nothing here ever talks
to a host other than ``127.0.0.1``.

Modules:

- :mod:`benchmarks._common`: paths, child-process environment, statistics;
- :mod:`benchmarks._server`: the server process (collector + sentry sink, steerable);
- :mod:`benchmarks._libs`: how each library is configured inside a child process;
- :mod:`benchmarks.percall`: cost per ``logger.error`` call, by server state;
- :mod:`benchmarks.exit_delay`: how long a process that logged an error takes to exit;
- :mod:`benchmarks.import_time`: the cost of importing each library;
- :mod:`benchmarks.throughput`: delivery rate, and progress while the app is busy;
- :mod:`benchmarks.memory`: peak RSS while a million records are logged;
- :mod:`benchmarks.cluster`: N processes at once behind one address, rate-limited, server
  up or down, then one ``spool send``;
- :mod:`benchmarks.report`: the Markdown tables, the goals and the plot.
"""

from __future__ import annotations

BENCHMARKS = ("percall", "exit_delay", "import_time", "throughput", "memory", "cluster")
"""The benchmark names, in the order they run (``--only`` takes these)."""

__all__ = ["BENCHMARKS"]
