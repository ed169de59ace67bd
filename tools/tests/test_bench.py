"""The benchmark's own arithmetic: the verdicts of ``--documented`` must not call a missed target
met (a ratio the wrong way round, a peak read for a settled figure, the wrong list's p99), and the
sizes it runs must be the documented ones. No control plane: the results are made up here."""

from __future__ import annotations

from typing import Any

import pytest

from tools.bench.__main__ import Result, pages_needed, parse, percentile, targets

MB = 2**20


def verdicts(*results: Result) -> dict[str, str]:
    return {row["figure"]: row["verdict"] for row in targets(results)}


def propagation(p50: float, p99: float, rate: float = 20.0) -> Result:
    run = {
        "rate_requested": rate,
        "namespaces": 500,
        "observed": 500,
        "floor_observed": 500,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": 55.0,
        "floor_p50_ms": 3.5,
        "floor_p99_ms": 6.0,
    }
    return Result("propagation", data={"runs": [run]})


@pytest.mark.parametrize(
    ("p50", "p99", "verdict"), [(4.2, 6.9, "met"), (10.1, 6.9, "MISSED"), (4.2, 25.5, "MISSED")]
)
def test_propagation_is_met_only_when_both_percentiles_are(p50: float, p99: float, verdict: str) -> None:
    (figure,) = verdicts(propagation(p50, p99))
    assert verdicts(propagation(p50, p99))[figure] == verdict


def fanout(operator: float, baseline: float) -> Result:
    server = {"requests": 1000.0, "throttled": 0.0, "patch_mean_ms": 6.0}
    return Result(
        "fanout",
        data={
            "copies": 1000,
            "operator": {"default": {"seconds": operator, "server": server}},
            "baseline_seconds": baseline,
            "ratio_default": operator / baseline,
            "concurrency": 16,
        },
    )


@pytest.mark.parametrize(("operator", "verdict"), [(1.15, "met"), (1.25, "MISSED")])
def test_the_fanout_ratio_is_the_operator_over_the_baseline(operator: float, verdict: str) -> None:
    found = verdicts(fanout(operator, baseline=1.0))
    assert found["blueprint update → 1000 copies, default settings"] == verdict


def many(settled: float, peak: float, ready: float, lists: int) -> Result:
    data: dict[str, Any] = {
        "blueprints": 20,
        "namespaces": 2000,
        "cluster_namespaces": 2005,
        "ready_seconds": ready,
        "first_pass_seconds": ready,
        "settled_rss_bytes": settled * MB,
        "peak_rss_bytes": peak * MB,
        "lists": lists,
        "pages_needed": pages_needed(2005, 20, 2000),
        "requests": {"GET": 170.0},
        "connections": 43,
        "rotation": {"copies": 2000, "seconds": 2.0, "server": {"requests": 2100.0, "throttled": 0.0}},
    }
    return Result("blueprints", data=data)


def test_many_blueprints_verdicts_read_the_peak_rss_ready_time_and_list_count() -> None:
    label = "20 blueprints × 2000 namespaces"
    good = verdicts(many(settled=111, peak=115, ready=3.0, lists=126))
    assert good[f"{label}: start → ready"] == "met"
    assert good[f"{label}: RSS, peak (settled)"] == "met"
    assert good[f"{label}: LIST requests at start"] == "met"
    bad = verdicts(many(settled=111, peak=121, ready=5.1, lists=127))
    assert bad[f"{label}: start → ready"] == "MISSED"
    assert bad[f"{label}: RSS, peak (settled)"] == "MISSED"
    assert bad[f"{label}: LIST requests at start"] == "MISSED"


def test_a_paged_list_of_n_objects_takes_n_over_page_plus_one_requests() -> None:
    # namespaces 2005 -> 5 requests; the Lease 1; per blueprint: itself 1 + 2000 copies -> 5
    assert pages_needed(2005, 20, 2000) == 5 + 1 + 20 * (1 + 5)
    assert pages_needed(499, 1, 499) == 1 + 1 + (1 + 1)


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(range(101)), 99) == 99.0


def test_documented_sizes_are_the_targets_sizes() -> None:
    options = parse(["--documented"])
    assert options.propagation == ((2.0, 120), (20.0, 500))
    assert (options.fanout, options.many, max(options.memory)) == (1000, (20, 2000), 10000)
    assert parse(["--rate", "5", "--namespaces", "50"]).propagation == ((5.0, 50),)


def test_a_handover_after_sigkill_may_take_the_lease_duration_plus_the_retry_period() -> None:
    def case(signal: str, seconds: float) -> dict[str, Any]:
        timings = {"lease_duration": "4", "renew_deadline": "3", "retry_period": "0.5"}
        return {"signal": signal, "timings": timings, "signal_to_copy_seconds": seconds}

    cases = [case("SIGTERM", 0.9), case("SIGKILL", 4.4), case("SIGTERM", 1.1), case("SIGKILL", 4.6)]
    rows = targets([Result("failover", data={"cases": cases})])
    assert [row["verdict"] for row in rows] == ["met", "met", "MISSED", "MISSED"]


def test_an_idle_operator_that_writes_or_sends_anything_else_misses() -> None:
    def idle(leader: dict[str, float], writes: float) -> list[str]:
        data = {
            "seconds": 660,
            "leader": {"requests_per_minute": leader, "writes": writes},
            "standby": {"requests_per_minute": {"GET": 0.5}, "writes": 0},
        }
        return [row["verdict"] for row in targets([Result("idle", data=data)])]

    assert idle({"GET": 0.4, "PATCH": 29.9}, 0) == ["met", "met"]
    assert idle({"GET": 0.4, "PATCH": 29.9, "POST": 0.1}, 0) == ["MISSED", "met"]
    assert idle({"GET": 0.4, "PATCH": 29.9}, 1) == ["MISSED", "met"]


def test_propagation_with_copies_missing_is_missed_whatever_the_percentiles() -> None:
    result = propagation(4.0, 7.0)
    result.data["runs"][0]["observed"] = 300
    (row,) = targets([result])
    assert row["verdict"] == "MISSED"
    assert "only 300 and 500 (floor) copies seen" in row["measured"]
