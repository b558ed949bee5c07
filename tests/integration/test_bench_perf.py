"""Every performance benchmark (`edge-agent bench stream|detector|e2e|footprint|modbus|soak|
peers|memory`) run through the command line with tiny sizes, so none of them can rot. These are not
timed tests: they check that each bench runs, prints its table and writes well-formed JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.footprint import CASES
from bench.perf_cli import CASE_NAMES
from edge_agent.cli import main

pytestmark = pytest.mark.integration


def bench(tmp_path: Path, *args: str) -> dict[str, object]:
    out = tmp_path / f"bench-{args[0]}.json"
    assert main(["bench", *args, "--json", str(out)]) == 0
    result: dict[str, object] = json.loads(out.read_text())
    return result


def test_bench_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = bench(tmp_path, "stream", "--values", "20000", "--assets", "1,3", "--max-seconds", "5")
    cases = r["cases"]
    assert isinstance(cases, list) and [c["assets"] for c in cases] == [1, 3]
    assert all(c["values_per_s"] > 0 and c["windows"] > 0 for c in cases)
    assert "values/s" in capsys.readouterr().out


def test_bench_detector(tmp_path: Path, trained_bundle) -> None:  # type: ignore[no-untyped-def]
    r = bench(
        tmp_path, "detector", "--bundle", str(trained_bundle.directory), "--workdir",
        str(tmp_path / "wd"), "--calls", "5", "--batches", "4", "--max-seconds", "2",
        "--cold-calls", "2", "--idle-s", "0.01",
    )  # fmt: skip
    cases = r["cases"]
    # A gateway bundle has no fp32 twin and the workdir no torch student: int8 alone.
    assert isinstance(cases, dict) and set(cases) == {"student_int8"}
    assert [c["batch"] for c in cases["student_int8"]] == [1, 4]
    assert r["ratios"] == {} and r["targets"] == {}
    # Calls after sleeping, as the agent calls at its sample rate: batch 1 and the largest.
    cold = r["cold"]
    assert isinstance(cold, dict) and [c["batch"] for c in cold["student_int8"]] == [1, 4]
    assert all(c["calls"] == 2 and c["cpu_us_per_call_p50"] > 0 for c in cold["student_int8"])
    # --before with the student architecture untrained: the graphs shipped before issue 16 and
    # the fp32 twin are built and timed beside the bundle's int8; the teacher's architecture,
    # untrained, times as well (it raised TypeError once).
    r = bench(
        tmp_path, "detector", "--bundle", str(trained_bundle.directory), "--untrained-teacher",
        "--before", "--untrained-student", "--workdir", str(tmp_path / "wd2"), "--calls", "20",
        "--batches", "4", "--max-seconds", "2", "--json", "untrained.json", "--cold-calls", "1",
        "--idle-s", "0",
    )  # fmt: skip
    cases = r["cases"]
    assert isinstance(cases, dict) and set(cases) == {
        "student_int8", "student_fp32", "student_int8_before", "student_fp32_before",
        "teacher_torch",
    }  # fmt: skip
    assert all(len(c) == 2 and c[0]["calls"] > 0 for c in cases.values())
    sizes, ratios = r["sizes"], r["ratios"]
    assert isinstance(sizes, dict) and sizes["student_int8_bytes"] < sizes["student_fp32_bytes"]
    assert isinstance(ratios, dict) and ratios["int8_speedup_vs_fp32_batched"] > 0
    assert ratios["cold_cpu_int8_speedup_vs_fp32_batch1"] > 0
    assert ratios["cold_cpu_int8_speedup_vs_fp32_batched"] > 0
    assert ratios["before_fp32_size_over_int8_size"] > 1
    assert r["student_weights"] == "untrained (same architecture)"
    targets = r["targets"]
    assert isinstance(targets, dict) and "int8_1.2x_fp32_batch1" in targets
    # --before needs a torch student: without one it says so.
    with pytest.raises(SystemExit, match="needs the torch student"):
        main(["bench", "detector", "--bundle", str(trained_bundle.directory), "--before",
              "--workdir", str(tmp_path / "wd3"), "--json", str(tmp_path / "x.json")])  # fmt: skip


def test_bench_modbus(tmp_path: Path) -> None:
    r = bench(tmp_path, "modbus", "--cycles", "5", "--max-seconds", "5")
    cases = r["cases"]
    assert isinstance(cases, list) and len(cases) == 4
    merged = [c for c in cases if c["merge_reads"]]
    assert all(c["requests_per_poll"] < c["points"] for c in merged)
    assert all(c["bad_readings"] == 0 for c in cases)


def test_bench_e2e(tmp_path: Path, trained_bundle) -> None:  # type: ignore[no-untyped-def]
    r = bench(
        tmp_path, "e2e", "--runs", "1", "--at", "120", "--bundle",
        str(trained_bundle.directory), "--workdir", str(tmp_path / "wd"),
    )  # fmt: skip
    assert r["raised_after_onset"] == 1
    latency = r["latency_s"]
    assert isinstance(latency, dict) and 0 < latency["p50"] < 60


def test_bench_footprint(tmp_path: Path, trained_bundle) -> None:  # type: ignore[no-untyped-def]
    assert tuple(CASES) == CASE_NAMES
    r = bench(
        tmp_path, "footprint", "--cases", "idle,modbus-1", "--warmup", "4", "--measure", "2",
        "--bundle", str(trained_bundle.directory), "--workdir", str(tmp_path / "wd"),
    )  # fmt: skip
    cases = r["cases"]
    assert isinstance(cases, list) and [c["case"] for c in cases] == ["idle", "modbus-1"]
    assert all(c["rss_mb"] > 10 and c["cpu_share_of_one_core"] >= 0 for c in cases)
    # The mappings add up to the RSS (within rounding and the moment between the two reads).
    for c in cases:
        assert "[heap]" in c["rss_by_mapping_mb"]
        assert abs(sum(c["rss_by_mapping_mb"].values()) - c["rss_mb"]) < 2


def test_bench_soak(tmp_path: Path, trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """A one-minute soak (hours are for `bench soak` itself): outage, SIGKILL, junk, and the
    report says nothing was lost and every asset scored."""
    r = bench(
        tmp_path, "soak", "--minutes", "1", "--pumps", "2", "--outage", "2", "--junk-every", "3",
        "--bundle", str(trained_bundle.directory), "--workdir", str(tmp_path / "wd"),
        # The pumps serve from after the bundle's training stretch; scenarios chosen.
        "--train-hours", "0.5", "--scenarios", "none,cavitation", "--record",
    )  # fmt: skip
    assert r["alerts_lost"] == []
    # --record: each asset's input, as `edge-agent replay` reads it (one file per agent process).
    recorded = {p.name.split(".")[0] for p in (tmp_path / "wd" / "record").glob("*.csv")}
    assert recorded == {"pump-0", "pump-1", "pump-mqtt"}
    gaps = r["longest_unscored_sim_s"]
    assert isinstance(gaps, dict) and set(gaps) == {"pump-0", "pump-1", "pump-mqtt"}
    assert all(g is not None for g in gaps.values())
    assert r["restart_to_first_score_s"] is not None and r["rss_mb"]
    pumps = r["pumps"]
    assert isinstance(pumps, list) and [p["scenario"] for p in pumps] == ["none", "cavitation"]


def test_bench_peers_agent_only(tmp_path: Path, trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """`--peer none`: the bench's own path (simulators counting requests, subscriber, summary)."""
    r = bench(
        tmp_path, "peers", "--peer", "none", "--devices", "1,2", "--rounds", "1", "--sims", "1",
        "--warmup", "4", "--measure", "2", "--bundle", str(trained_bundle.directory),
        "--workdir", str(tmp_path / "wd"),
    )  # fmt: skip
    summary = r["summary"]
    assert isinstance(summary, list) and [(s["devices"], s["gateway"]) for s in summary] == [
        (1, "agent"), (2, "agent"),
    ]  # fmt: skip
    # One merged read per device and poll, counted at the simulator.
    assert all(0.5 <= s["modbus_requests_per_poll"] <= 1.5 for s in summary)
    assert all(s["rss_mb"] > 10 and s["peak_rss_mb"] >= s["rss_mb"] for s in summary)


def test_bench_peers_thingsboard(tmp_path: Path, trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """The real peer: ThingsBoard IoT Gateway installed from the package index into the bench's
    own virtualenv (about 30 s), polling the same simulator into the same broker."""
    r = bench(
        tmp_path, "peers", "--devices", "1", "--rounds", "1", "--warmup", "8", "--measure", "3",
        "--bundle", str(trained_bundle.directory), "--workdir", str(tmp_path / "wd"),
    )  # fmt: skip
    summary = r["summary"]
    assert isinstance(summary, list)
    by = {s["gateway"]: s for s in summary}
    assert set(by) == {"agent", "peer"}
    # The peer reads each of the 8 registers blocks on its own and forwards every value.
    assert 6 <= by["peer"]["modbus_requests_per_poll"] <= 10
    assert by["peer"]["values_per_s"] > 0
    assert 0.5 <= by["agent"]["modbus_requests_per_poll"] <= 1.5
    assert set(r["targets"]) >= {"rss_below_peer_1", "cpu_10x_below_peer_1"}


def test_bench_memory(tmp_path: Path, trained_bundle) -> None:  # type: ignore[no-untyped-def]
    r = bench(tmp_path, "memory", "--bundle", str(trained_bundle.directory))
    steps = r["steps"]
    assert isinstance(steps, list)
    assert [s["step"] for s in steps][:2] == ["interpreter", "asyncio"]
    assert steps[-1]["step"] == "asyncua" and steps[-1]["added_mb"] > 1
    assert all(s["rss_mb"] > 5 for s in steps)


def test_bench_quality_asset_days(tmp_path: Path, trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """`bench quality --mode asset-days` with a given bundle (the suite's, trained on the seed-1
    pump's first 12000 simulated seconds): its training day replays without an alert, normal
    stretches are counted, and a gross fault is flagged within a sample or two of its onset."""
    r = bench(
        tmp_path, "quality", "--mode", "asset-days", "--bundle", str(trained_bundle.directory),
        "--train-hours", str(12000 / 3600), "--stretches", "2", "--stretch-hours", "0.2",
        "--fault-starts", "1", "--scenarios", "cavitation", "--jobs", "1",
        "--workdir", str(tmp_path / "wd"),
    )  # fmt: skip
    assert r["raised_on_training_day"] == 0
    assert r["normal_asset_hours"] == pytest.approx(0.4)
    normal = r["normal"]
    assert isinstance(normal, list) and [s["start_s"] for s in normal] == [12000, 12720]
    faults = r["faults"]
    assert isinstance(faults, dict)
    assert faults["cavitation"]["detected"] == 1 and faults["cavitation"]["delays_s"][0] <= 2


def test_bench_quality_asset_days_trains_its_bundle(tmp_path: Path) -> None:
    """Without --bundle the bench trains one with `edge-agent train`'s defaults on the day."""
    pytest.importorskip("torch")
    r = bench(
        tmp_path, "quality", "--mode", "asset-days", "--train-hours", "0.3", "--stretches", "1",
        "--stretch-hours", "0.1", "--fault-starts", "1", "--scenarios", "cavitation",
        "--jobs", "1", "--workdir", str(tmp_path / "wd"),
    )  # fmt: skip
    assert (tmp_path / "wd" / "bundle" / "manifest.json.gz").is_file()
    assert r["raised_on_training_day"] == 0
    assert isinstance(r["faults"], dict) and r["faults"]["cavitation"]["detected"] == 1
