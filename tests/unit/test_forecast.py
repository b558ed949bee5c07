"""Time-to-limit forecasts (issue 14): the trend, the stage's `predicted` alert lifecycle, its
payload against the schema, and limits validated in profiles and configs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from edge_agent.alerts.messages import alert_payload, encode, load_schema
from edge_agent.config import ConfigError, load_config
from edge_agent.forecast.calibration import Calibration
from edge_agent.forecast.stage import ForecastParams, ForecastStage, envelope
from edge_agent.forecast.trend import crossings, quadratic_weight
from edge_agent.limits import LimitSpec
from edge_agent.sources.registry import parse_profile
from edge_agent.types import AlertEvent, AlertEventKind

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "pump-skid.yaml"
VALIDATOR = jsonschema.Draft202012Validator(
    load_schema("alert"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def test_trend_on_a_ramp_finds_the_crossing_within_its_interval():
    rng = np.random.default_rng(3)
    t = np.arange(60) * 60.0  # an hour of minute levels
    y = 2.0 + 1.0 * t / 3600 + 0.03 * rng.standard_normal(60)  # +1 per hour, limit 2.5 h away
    (c,) = crossings(t, y[:, None], np.array([5.5]), 4 * 3600.0, 60.0) or []
    truth = 2.5 * 3600
    assert abs(c.eta - truth) < 0.1 * truth
    assert c.near <= truth <= c.far
    assert c.rate * 3600 == pytest.approx(1.0, rel=0.1)


def test_trend_on_an_accelerating_rise_uses_its_curvature():
    t = np.arange(90) * 60.0
    hours = t / 3600
    y = 2.0 + 0.8 * hours**2  # accelerating; 4.5 is reached at sqrt(2.5/0.8) = 1.77 h
    truth = (math.sqrt(2.5 / 0.8) - hours[-1]) * 3600
    (c,) = crossings(t, y[:, None], np.array([4.5]), 4 * 3600.0, 60.0) or []
    assert c.curved
    assert abs(c.eta - truth) < 0.05 * truth
    # A straight line would have said later.
    assert c.eta_linear > c.eta


def test_trend_on_flat_noise_does_not_cross():
    rng = np.random.default_rng(4)
    t = np.arange(90) * 60.0
    y = 2.0 + 0.05 * rng.standard_normal(90)
    (c,) = crossings(t, y[:, None], np.array([4.5]), 4 * 3600.0, 60.0) or []
    assert math.isinf(c.eta) and math.isinf(c.near) and math.isinf(c.far)


SPEC = LimitSpec(unit="mm/s", alarm_high=4.5, trip_high=7.1, label="ISO 10816-3 zone C/D")
PARAMS = ForecastParams(horizon_s=3600, bucket_s=60, history_s=3600, min_history_s=1200)


def run_stage(level_at, seconds: int, nan_every: int = 0) -> list[AlertEvent]:
    stage = ForecastStage.build(
        "pump-1", ["motor_current", "vibration_de"], {"vibration_de": SPEC}, PARAMS,
        [(20.0, 40.0), (1.5, 2.5)],
    )  # fmt: skip
    assert stage is not None
    rng = np.random.default_rng(7)
    events: list[AlertEvent] = []
    t0 = 1_800_000_000.0
    for i in range(seconds):
        v = np.array([30.0, level_at(i) + 0.05 * rng.standard_normal()], dtype=np.float32)
        valid = True
        if nan_every and i % nan_every == 0:
            v[1] = np.nan  # hostile: a NaN in a sample marked valid
        if i % 97 == 0:
            valid = False  # an invalid sample is skipped
        events += stage.push(t0 + i, v, valid)
    return events


def ramp_then_flat(i: int) -> float:
    # 2 mm/s for 30 min, then +1.5 mm/s per hour for 80 min, then flat at 4 mm/s (the trend
    # went away before the limit).
    if i < 1800:
        return 2.0
    if i < 1800 + 4800:
        return 2.0 + 1.5 * (i - 1800) / 3600
    return 2.0 + 1.5 * 4800 / 3600


def test_predicted_alert_is_raised_before_the_crossing_and_cleared_when_the_trend_goes():
    events = run_stage(ramp_then_flat, 4 * 3600)
    kinds = [e.event for e in events]
    assert kinds[0] is AlertEventKind.RAISED and kinds[-1] is AlertEventKind.CLEARED
    assert kinds.count(AlertEventKind.RAISED) == 1 and kinds.count(AlertEventKind.CLEARED) == 1
    assert len({e.alert_id for e in events}) == 1
    raised = events[0]
    f = raised.forecast
    assert f is not None and raised.kind == "predicted"
    # Had the ramp gone on, it would have reached 4.5 mm/s at 1800 + 6000 s; raised well before.
    truth = 1_800_000_000.0 + 1800 + 2.5 / 1.5 * 3600
    assert raised.ts < truth - 1800
    assert f.time_to_limit_s is not None
    # Soon after the knee of a hinge (flat, then a straight ramp) the quadratic reads the knee
    # as acceleration and says "sooner" than the truth: early, never late (a known bias, see
    # docs/QUALITY.md).
    assert raised.ts + f.time_to_limit_s <= truth
    near, _far = f.interval_s
    assert near is not None and near <= PARAMS.horizon_s
    assert "vibration_de reaches 4.5 mm/s (ISO 10816-3 zone C/D alarm) in about" in raised.message
    assert "80 % interval" in raised.message
    # Cleared only after the ramp stopped (at 1800 + 4800 s).
    assert events[-1].ts > 1_800_000_000.0 + 6600


def test_flat_signal_raises_nothing_and_nan_samples_are_survived():
    assert run_stage(lambda i: 2.0, 3 * 3600) == []
    assert run_stage(lambda i: 2.0, 3 * 3600, nan_every=50) == []


def test_predicted_payloads_validate_against_the_alert_schema():
    events = run_stage(ramp_then_flat, 4 * 3600)
    assert events
    for e in events:
        body = alert_payload(e, "site", "gw")
        encode(body)  # strict JSON: no NaN, no infinity
        VALIDATOR.validate(body)
        assert body["forecast"]["interval_s"]["confidence"] == 0.8
    # The schema ties the two together: a predicted alert without its forecast is invalid.
    body = alert_payload(events[0], "site", "gw")
    del body["forecast"]
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(body)


def test_limit_specs_are_checked():
    with pytest.raises(ValidationError, match="at least one"):
        LimitSpec(unit="mm/s")
    with pytest.raises(ValidationError, match="trip_high must be >= alarm_high"):
        LimitSpec(unit="mm/s", alarm_high=4.5, trip_high=2.8)
    with pytest.raises(ValidationError, match="high limits must be above low limits"):
        LimitSpec(unit="bar", alarm_high=3.0, alarm_low=4.0)


def profile(limits: dict[str, object]) -> dict[str, object]:
    return {
        "protocol": "modbus", "vendor": "v", "model": "m", "firmware": "1",
        "points": [{"name": "vib", "table": "holding", "address": 0, "type": "float32",
                    "unit": "mm/s"}],
        "limits": limits,
    }  # fmt: skip


def test_profile_limits_name_the_point_and_unit():
    assert parse_profile(profile({"vib": {"unit": "mm/s", "alarm_high": 4.5}})).limits
    with pytest.raises(ValidationError, match=r"limits\.temp: no signal 'temp'"):
        parse_profile(profile({"temp": {"unit": "degC", "alarm_high": 80}}))
    with pytest.raises(ValidationError, match=r"limits\.vib: limit in 'in/s' but signal 'vib'"):
        parse_profile(profile({"vib": {"unit": "in/s", "alarm_high": 0.18}}))


def write(tmp_path: Path, limits: dict[str, object], **forecast: object) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["assets"][0]["limits"] = limits
    if forecast:
        data["assets"][0]["forecast"] = forecast
    p = tmp_path / "agent.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_asset_limits_lie_over_the_profiles(tmp_path):
    cfg = load_config(write(tmp_path, {"vibration_de": {"unit": "mm/s", "alarm_high": 3.5}}))
    limits = cfg.settings.assets[0].limits
    assert limits["vibration_de"].alarm_high == 3.5  # the asset's own
    assert limits["vibration_nde"].alarm_high == 4.5  # the profile's (ISO 10816-3)
    assert limits["motor_temperature"].unit == "degC"


def test_bad_asset_limits_are_errors_naming_them(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(
            write(
                tmp_path,
                {
                    "vibration_de": {"unit": "in/s", "alarm_high": 0.18},
                    "bearing_temp": {"unit": "degC", "alarm_high": 90},
                },
            )
        )
    errors = "\n".join(exc.value.errors)
    assert (
        "assets[0].limits.vibration_de: limit in 'in/s' but signal 'vibration_de' is in" in errors
    )
    assert "assets[0].limits.bearing_temp: no signal 'bearing_temp'" in errors


def test_validate_exits_2_on_a_bad_limit(tmp_path):
    path = write(tmp_path, {"flow": {"unit": "m3/h", "alarm_low": 50}})
    r = subprocess.run(
        [sys.executable, "-m", "edge_agent", "validate", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert "assets[0].limits.flow: no signal 'flow'" in r.stderr
    assert "Traceback" not in r.stderr


def test_forecast_config_is_checked(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, {}, min_history_s=9000, history_s=3600))
    assert any("assets[0].forecast" in e and "min_history_s" in e for e in exc.value.errors)


# --- the upper envelope and the honest interval (issue 14, second pass) ---


def load_cycle(n: int, high: float, low: float, noise: float, seed: int) -> np.ndarray:
    """A signal that swings with load: `high` for 40 s, `low` for 20 s, white noise on top."""
    rng = np.random.default_rng(seed)
    loaded = (np.arange(n) % 60) < 40
    return np.where(loaded, high, low) + noise * rng.standard_normal(n)


def test_envelope_is_the_loaded_level_not_the_mean():
    x = load_cycle(120, high=96.0, low=90.0, noise=0.2, seed=1)
    (env,) = envelope(x[:, None])
    # The mean (94) is what the old levels were: 2 °C under what a limit alarm meets.
    assert x.mean() < 94.5
    assert env == pytest.approx(96.0, abs=0.35)


def test_envelope_of_noise_alone_is_its_mean_not_a_noise_quantile():
    rng = np.random.default_rng(2)
    x = 3.0 + 0.2 * rng.standard_normal((120, 1))
    (env,) = envelope(x)
    # The 90th percentile would say 3.26: the white noise is taken out.
    assert np.quantile(x, 0.9) > 3.2
    assert env == pytest.approx(3.0, abs=0.08)


def test_envelope_for_a_low_limit_is_the_lower_level_mirrored():
    x = load_cycle(120, high=5.0, low=2.0, noise=0.05, seed=3)
    (env,) = envelope(-x[:, None])
    assert -env == pytest.approx(2.0, abs=0.1)


def test_stage_levels_follow_the_loaded_peaks_of_both_sides():
    high = LimitSpec(unit="degC", alarm_high=100.0)
    low = LimitSpec(unit="bar", alarm_low=1.0)
    params = ForecastParams(horizon_s=3600, bucket_s=120, history_s=3600, min_history_s=1200)
    stage = ForecastStage.build(
        "c-1", ["temp", "pressure"], {"temp": high, "pressure": low}, params
    )
    assert stage is not None
    n = 3000
    temp = load_cycle(n, high=96.0, low=90.0, noise=0.2, seed=4)
    pressure = load_cycle(n, high=7.0, low=4.0, noise=0.02, seed=5)
    for i in range(n):
        stage.push(1_800_000_000.0 + i, np.array([temp[i], pressure[i]]), True)
    by_signal = {g.signal: g for g in stage.targets}
    assert by_signal["temp"].last is not None and by_signal["pressure"].last is not None
    # The fitted level (sign-adjusted) is the loaded peak of the temperature and the low
    # state of the pressure, not their means (94 and 6).
    assert by_signal["temp"].last.level == pytest.approx(96.0, abs=0.3)
    assert -by_signal["pressure"].last.level == pytest.approx(4.0, abs=0.1)


def test_quadratic_weight_grows_with_the_curvatures_evidence():
    assert quadratic_weight(-1.0, 0.1) == 0.0  # bending down: the line alone
    assert quadratic_weight(0.0, 0.1) == 0.0
    weak, clear = quadratic_weight(0.1, 0.1), quadratic_weight(0.4, 0.1)
    assert 0.0 < weak < 0.5 < clear <= 1.0
    assert quadratic_weight(1.0, 0.0) == 1.0


def test_widening_widens_the_interval_and_leaves_the_estimate():
    rng = np.random.default_rng(3)
    t = np.arange(60) * 60.0
    y = (2.0 + t / 3600 + 0.03 * rng.standard_normal(60))[:, None]
    (plain,) = crossings(t, y, np.array([5.5]), 4 * 3600.0, 60.0) or []
    (wide,) = crossings(t, y, np.array([5.5]), 4 * 3600.0, 60.0, np.array([2.0])) or []
    assert wide.eta == plain.eta
    assert wide.near < plain.near < plain.eta < plain.far < wide.far
    # The path the calibration scores is the unwidened band.
    assert np.array_equal(wide.path_sd, plain.path_sd)


def test_calibration_widens_by_how_far_past_forecasts_missed():
    k, leads = 2, 5
    # A window of 500 levels: the 80th percentile of their misses is known to a few percent.
    cal = Calibration(leads=leads, step_s=60.0, window_s=500 * 60.0, min_checks=leads)
    rng = np.random.default_rng(8)
    assert np.array_equal(cal.widening(k), np.ones(k))  # nothing checked yet
    # Target 0: the fits said σ = 1 and the levels missed by σ = 1 (honest). Target 1: they
    # said σ = 1 and missed by σ = 3 (three times too narrow).
    for i in range(600):
        t = i * 60.0
        cal.observe(t, np.array([rng.standard_normal(), 3.0 * rng.standard_normal()]))
        cal.add_fit(t, np.zeros((k, leads)), np.ones((k, leads)))
    w = cal.widening(k)
    assert w[0] == pytest.approx(1.0, abs=0.15)
    assert w[1] == pytest.approx(3.0, rel=0.15)
    # Only the recent window counts: after an honest window target 1 needs no widening.
    for i in range(600, 1110):
        t = i * 60.0
        cal.observe(t, rng.standard_normal(k))
        cal.add_fit(t, np.zeros((k, leads)), np.ones((k, leads)))
    assert cal.widening(k)[1] == pytest.approx(1.0, abs=0.15)


def test_stage_widens_its_band_when_its_past_forecasts_missed():
    # A ramp with a slow swing (90-minute period) that a line on 1 hour of levels cannot follow: the
    # fits keep missing the levels that come, and the stage's band grows past the plain one.
    def level(i: int) -> float:
        return 1.0 + 1.0 * i / 3600 + 0.15 * math.sin(2 * math.pi * i / 5400)

    spec = LimitSpec(unit="mm/s", alarm_high=6.5)
    stage = ForecastStage.build("p", ["vib"], {"vib": spec}, PARAMS)
    assert stage is not None
    rng = np.random.default_rng(11)
    for i in range(4 * 3600):
        stage.push(1_800_000_000.0 + i, np.array([level(i) + 0.05 * rng.standard_normal()]), True)
    cal = stage._calibration
    assert cal is not None
    (widening,) = cal.widening(1)
    assert widening > 1.5
    g = stage.targets[0]
    assert g.last is not None
    t = np.fromiter(stage._times, dtype=np.float64)
    y = np.stack(list(stage._levels))
    args = (t, y, stage._limits, PARAMS.lookahead * PARAMS.horizon_s, PARAMS.bucket_s)
    (plain,) = crossings(*args) or []
    (wide,) = crossings(*args, np.array([widening])) or []
    # What the stage published is the widened band (less the half bucket it counts from).
    assert g.last.near == pytest.approx(max(0.0, wide.near - PARAMS.bucket_s / 2))
    assert math.isfinite(plain.near)
    assert wide.near < plain.near <= plain.far < wide.far


def test_a_nan_marked_valid_spoils_its_bucket_only():
    stage = ForecastStage.build("p", ["vib"], {"vib": SPEC}, PARAMS)
    assert stage is not None
    for i in range(10 * 60):  # ten 60-second buckets
        v = np.nan if i == 200 else 2.0  # in the fourth bucket
        stage.push(1_800_000_000.0 + i, np.array([v]), True)
    stage.push(1_800_000_000.0 + 600, np.array([2.0]), True)  # closes the tenth
    assert len(stage._times) == 9
    assert all(np.isfinite(level).all() for level in stage._levels)
