"""`bench quality --mode forecast` end to end on one seed: the simulated wear crosses its limit,
the forecast stage predicts it before the PLC's alarm, and the figures come out of the truth."""

from __future__ import annotations

import json

from bench.forecast import FAULTS, ForecastBenchConfig, main


def test_forecast_bench_one_seed(tmp_path):
    out = tmp_path / "forecast.json"
    cfg = ForecastBenchConfig(seeds=1, normal_hours=1.0, faults=["bearing_wear_hours"])
    assert main(cfg, out) == 0
    result = json.loads(out.read_text())
    (row,) = result["faults"]["bearing_wear_hours"]
    assert row["crossed"] and row["signal"] == "vibration_de"
    # The PLC alarm (first noisy sample over 4.5 mm/s) is not after the noise-free crossing.
    assert row["plc_alarm_lead_over_truth_s"] >= 0
    assert row["predicted_lead_over_plc_s"] > 0
    assert 0 <= row["ttl_error_60min"] < 1
    assert result["summary"]["normal"]["hours"] == 1.0
    assert FAULTS["cooler_fouling_hours"] == "compressor"
