"""Admission on a fake clock: folding, the rate cap and the queue bound, in microseconds."""

from __future__ import annotations

import pytest

from migas_logging.admission import Admission, RateCap, summary_suffix
from migas_logging.exceptions import ConfigurationError

ROUTE = object()


def admission(**kwargs: object) -> Admission:
    options: dict[str, object] = {"fold_window": 60.0, "rate_cap": None, "queue_size": 10}
    options.update(kwargs)
    return Admission(**options)  # type: ignore[arg-type]


class TestFolding:
    def test_repeats_inside_the_window_fold_and_close_with_their_time(self) -> None:
        """Three repeats in 12 s fold; the next one after the window closes them."""
        adm = admission()
        assert "" == adm.admit("k", ROUTE, "d", 0.0, 0, privileged=False)
        for t in (4.0, 8.0, 12.0):
            assert "folded" == adm.admit("k", ROUTE, "d", t, 0, privileged=False)
        assert "" == adm.admit("k", ROUTE, "d", 61.0, 0, privileged=False)
        (fold,) = adm.take_closed()
        assert (3, 12.0) == fold.take_summary()
        assert " [repeated 3 more times in 12 s]" == summary_suffix(3, 12.0)
        assert " [repeated 1 more time in 0 s]" == summary_suffix(1, 0.2)

    def test_sweep_closes_expired_windows_in_start_order(self) -> None:
        """A sweep stops at the first open window; flush_all hands every count over."""
        adm = admission(fold_window=10.0)
        for key, t in (("a", 0.0), ("b", 5.0)):
            adm.admit(key, ROUTE, key, t, 0, privileged=False)
            adm.admit(key, ROUTE, key, t + 1, 0, privileged=False)
        adm.sweep(12.0)
        assert ["a"] == [f.data for f in adm.take_closed()]
        adm.sweep(12.0, flush_all=True)
        assert ["b"] == [f.data for f in adm.take_closed()]
        assert ["b"] == [f.data for f in adm.folds.values()]

    def test_table_is_bounded(self) -> None:
        """More distinct keys than max_folds evict the oldest window."""
        adm = admission(max_folds=3, queue_size=100)
        for i in range(10):
            adm.admit(i, ROUTE, i, float(i), 0, privileged=False)
        assert 3 == len(adm.folds)
        assert [7, 8, 9] == list(adm.folds)

    def test_zero_window_never_folds(self) -> None:
        adm = admission(fold_window=0)
        assert ["", ""] == [adm.admit("k", ROUTE, 1, 0.0, 0, privileged=False) for _ in "ab"]


class TestCapAndBound:
    def test_rate_cap_refills_with_the_clock(self) -> None:
        """30/60: a burst of 30, then one more every 2 s."""
        adm = admission(rate_cap=RateCap(30, 60, now=0.0), queue_size=1000, fold_window=0)
        results = [adm.admit(None, ROUTE, i, 0.0, 0, privileged=False) for i in range(31)]
        assert 30 == results.count("")
        assert "rate_cap" == results[-1]
        assert "rate_cap" == adm.admit(None, ROUTE, 0, 1.0, 0, privileged=False)
        assert "" == adm.admit(None, ROUTE, 0, 2.1, 0, privileged=False)

    def test_queue_bound_and_privileged_terminal(self) -> None:
        """A full queue drops the newest; only the terminal breadcrumb passes both."""
        adm = admission(rate_cap=RateCap(1, 60, now=0.0), queue_size=2, fold_window=0)
        assert "" == adm.admit(None, ROUTE, 0, 0.0, 0, privileged=False)
        assert "rate_cap" == adm.admit(None, ROUTE, 0, 0.0, 0, privileged=False)
        assert "" == adm.admit(None, ROUTE, 0, 0.0, 2, privileged=True)
        adm2 = admission(queue_size=2, fold_window=0)
        assert "queue_full" == adm2.admit(None, ROUTE, 0, 0.0, 2, privileged=False)

    def test_summaries_obey_cap_and_bound(self) -> None:
        adm = admission(rate_cap=RateCap(1, 60, now=0.0), queue_size=5)
        assert adm.summary_admitted(0.0, 0)
        assert not adm.summary_admitted(0.0, 0)  # the cap
        assert not admission(queue_size=1).summary_admitted(0.0, 1)  # the bound


class TestRateCapParse:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("30/60", (30, 60.0)), ("10/min", (10, 60.0)), ((5, 2), (5, 2.0)), ("7", (7, 60.0))],
    )
    def test_forms(self, text: object, expected: tuple[int, float]) -> None:
        cap = RateCap.parse(text)
        assert cap is not None
        assert expected == (cap.count, cap.period)

    @pytest.mark.parametrize("bad", ["0/60", "abc", "5/0", (1, 2, 3), "10**99/1", "1/1e99"])
    def test_bad_values_fail_at_configuration(self, bad: object) -> None:
        with pytest.raises(ConfigurationError, match="rate_limit"):
            RateCap.parse(bad)
