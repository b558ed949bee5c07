"""Energy stage: power from the profile's roles, integration over valid samples only, intervals,
specific energy, the profile checks (units: exit 2 naming the role), energy off when the
electrical signals are missing, the efficiency model and judge, and the energy/1 payload."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

from edge_agent.alerts.messages import alert_payload, energy_payload, load_schema
from edge_agent.config import AssetConfig, ConfigError, SignalConfig, load_config
from edge_agent.energy.efficiency import EfficiencyJudge, fit_efficiency
from edge_agent.energy.meter import EnergyMeter, power_kw, resolve
from edge_agent.energy.spec import AssetEnergyConfig, EnergySpec
from edge_agent.energy.stage import EnergyStage, energy_signals
from edge_agent.profiles import load_any_profile
from edge_agent.sources.registry import parse_profile
from edge_agent.types import AlertEventKind, Batch, Reading, Sample

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "pump-skid.yaml"
UNITS = {"i": "A", "v": "V", "pf": "", "q": "m3/h", "p": "bar"}
SPEC = EnergySpec(
    current="i", voltage="v", power_factor="pf", product="q", operating_point=["q", "p"]
)
T0 = 1_767_225_600.0  # on a quarter hour


def sample(ts: float, i: float, v: float, pf: float, q: float, p: float = 5.0, ok: bool = True):
    return Sample(ts, np.array([i, v, pf, q, p], dtype=np.float32), ok)


def test_three_phase_power_and_units():
    sig = resolve("plc", SPEC, UNITS)
    p, pf = power_kw(sig, np.array([40.0, 400.0, 0.85, 100.0, 5.0], dtype=np.float32))
    assert pf == pytest.approx(0.85)
    assert p == pytest.approx(math.sqrt(3) * 400 * 40 * 0.85 / 1000, rel=1e-6)
    single = resolve("plc", SPEC.model_copy(update={"phases": 1}), UNITS)
    assert power_kw(single, np.array([40, 230, 1.0, 1, 1], dtype=np.float32))[0] == (
        pytest.approx(9.2)
    )
    milli = resolve("plc", SPEC, {**UNITS, "i": "mA", "v": "kV"})
    row = np.array([40_000.0, 0.4, 0.85, 100.0, 5.0], dtype=np.float32)
    assert power_kw(milli, row)[0] == pytest.approx(p, rel=1e-6)
    # A power factor outside (0, 1] gives no power (the sample is not integrated).
    assert math.isnan(power_kw(sig, np.array([40, 400, 1.3, 1, 1], dtype=np.float32))[0])


def test_energy_integrates_valid_samples_only_and_reports_unmeasured_time():
    sig = resolve("plc", SPEC, UNITS)
    meter = EnergyMeter("pump", sig, period=1.0, interval_s=60.0)
    reports = []
    for k in range(1, 130):
        valid = not 10 <= k < 20  # ten invalid samples (stale, bad) in the first interval
        pf = 1.5 if k == 30 else 0.8  # and one implausible power factor
        reports += meter.push(sample(T0 + k, 10.0, 400.0, pf, 36.0, ok=valid))[0]
    assert [(r.start, r.end) for r in reports] == [(T0 + 0.5, T0 + 60), (T0 + 60, T0 + 120)]
    first, second = reports
    kw = math.sqrt(3) * 400 * 10 * 0.8 / 1000
    # Samples 1..59: 59 s of which 11 samples add nothing.
    assert first.samples == 59 and first.invalid_samples == 11
    assert first.measured_s == pytest.approx(48.0)
    assert first.unmeasured_s == pytest.approx(59.5 - 48.0)
    assert first.energy_kwh == pytest.approx(kw * 48 / 3600, rel=1e-6)
    assert first.mean_power_kw == pytest.approx(kw, rel=1e-6)
    assert first.product == pytest.approx(36.0 / 3600 * 48)
    assert first.specific_energy == pytest.approx(first.energy_kwh / first.product)
    assert second.measured_s == pytest.approx(60.0) and second.unmeasured_s == 0.0
    assert meter.rejected == 1


def test_a_long_gap_is_unmeasured_and_empty_intervals_are_not_reported():
    sig = resolve("plc", SPEC, UNITS)
    meter = EnergyMeter("pump", sig, period=1.0, interval_s=60.0)
    out = []
    for ts in [T0 + 1, T0 + 2, T0 + 3]:
        out += meter.push(sample(ts, 10, 400, 0.8, 36))[0]
    # The assembler stands one invalid sample for a long silence, stamped at its end.
    out += meter.push(sample(T0 + 250, 10, 400, 0.8, 36, ok=False))[0]
    out += meter.push(sample(T0 + 300, 10, 400, 0.8, 36))[0]
    assert [(r.start - T0, r.end - T0) for r in out] == [(0.5, 60), (240, 300)]
    assert out[0].measured_s == 3.0 and out[0].unmeasured_s == 56.5
    gap = out[1]  # only the invalid sample that stands for the silence: nothing measured
    assert gap.measured_s == 0 and gap.unmeasured_s == 60 and gap.mean_power_kw is None


def test_no_product_moved_gives_no_specific_energy():
    sig = resolve("plc", SPEC, UNITS)
    meter = EnergyMeter("pump", sig, period=1.0, interval_s=10.0)
    out = []
    for k in range(1, 25):
        out += meter.push(sample(T0 + k, 10, 400, 0.8, 0.0))[0]
    assert out and all(r.specific_energy is None and r.energy_kwh > 0 for r in out)


def test_profile_units_are_checked_and_name_the_role():
    base = yaml.safe_load((ROOT / "firmware_configs" / "acme_pump_plc_fw1.yaml").read_text())
    base["energy"]["current"] = "discharge_pressure"
    with pytest.raises(ValueError, match=r"energy.current: point 'discharge_pressure' has unit "
                       r"'bar'; current takes one of 'A', 'mA', 'kA'"):  # fmt: skip
        parse_profile(base)
    base["energy"]["current"] = "no_such_point"
    with pytest.raises(ValueError, match=r"energy\.current: 'no_such_point' is not a point"):
        parse_profile(base)


def test_wrong_unit_exits_2_naming_it(tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    doc = yaml.safe_load((ROOT / "firmware_configs" / "acme_pump_plc_fw1.yaml").read_text())
    doc["energy"]["product"] = "motor_temperature"
    (profiles / "bad_pump.yaml").write_text(yaml.safe_dump(doc))
    data = yaml.safe_load(EXAMPLE.read_text())
    data["profile_dirs"] = [str(profiles)]
    for s in data["sources"]:
        s["profile"] = "bad_pump"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_config(cfg, files=False)
    assert any("energy.product: point 'motor_temperature' has unit 'degC'" in e
               for e in exc.value.errors)  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "edge_agent", "validate", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "energy.product" in r.stderr and "Traceback" not in r.stderr


def asset(**energy: object) -> AssetConfig:
    return AssetConfig(
        name="pump", sample_period_s=1.0, bundle=Path("b"),
        signals=[SignalConfig(name="motor_current", source="plc")],
        energy=AssetEnergyConfig.model_validate(energy) if energy else None,
    )  # fmt: skip


def test_energy_off_when_electrical_signals_are_missing_not_an_error():
    pump = load_any_profile(ROOT / "firmware_configs" / "acme_pump_plc_fw1.yaml")
    comp = load_any_profile(ROOT / "firmware_configs" / "acme_compressor_fw1.yaml")
    on = energy_signals(asset(), {"plc": pump})
    assert not isinstance(on, str) and on.points[:3] == (
        "motor_current",
        "motor_voltage",
        "power_factor",
    )
    off = energy_signals(asset(), {"plc": comp})
    assert off == "profile of source 'plc' declares energy but no voltage, power_factor declared"
    fw2 = load_any_profile(ROOT / "firmware_configs" / "acme_pump_plc_fw2.yaml")
    assert "no electrical signals" in str(energy_signals(asset(), {"plc": fw2}))
    assert "disabled" in str(energy_signals(asset(enabled=False), {"plc": pump}))


def normal_data(n: int, rng: np.random.Generator, loss: float = 0.0):
    """A pump-like power surface over flow and head, with meter noise."""
    q = 60 + 40 * (0.5 + 0.5 * np.sin(np.arange(n) / 900.0)) + rng.normal(0, 0.5, n)
    p = 7 * (1 - 0.45 * (q / 120) ** 2)
    eff = 0.55 + 0.3 * q / 120
    power = p * 1e5 * q / 3600 / 1000 / eff / (1 - loss) + rng.normal(0, 0.1, n)
    return power, np.stack([q, p], axis=1)


def test_efficiency_model_fits_normal_data_and_judges_excess_only():
    rng = np.random.default_rng(0)
    power, ops = normal_data(4 * 3600, rng)
    spec = fit_efficiency(power, ops, ["q", "p"], period=1.0, window_s=300)
    assert spec.blocks == 48 and 0 < spec.tolerance < 0.02
    judge = EfficiencyJudge("pump", spec, 1.0, "m1")

    def run(pw, op, t0):
        events = (judge.push(t0 + k, float(pw[k]), spec.expected_kw(op[k])) for k in range(len(pw)))
        return [e for e in events if e is not None]

    fresh, fresh_ops = normal_data(3 * 3600, np.random.default_rng(1))
    assert run(fresh, fresh_ops, T0) == []  # normal data of the same unit: nothing
    assert run(fresh * 0.9, fresh_ops, T0) == []  # using *less* is not an efficiency loss
    worn, worn_ops = normal_data(1800, np.random.default_rng(2), loss=3 * spec.tolerance)
    events = run(worn, worn_ops, T0 + 10_000)
    assert [e.event for e in events] == [AlertEventKind.RAISED]
    raised = events[0]
    assert raised.kind == "efficiency" and raised.score > raised.threshold > 1
    # It clears after blocks back to normal, under the same id; the payload is a valid alert/1.
    cleared = run(fresh[:1800], fresh_ops[:1800], T0 + 20_000)
    assert [(e.event, e.alert_id) for e in cleared] == [(AlertEventKind.CLEARED, raised.alert_id)]
    validator = jsonschema.Draft202012Validator(
        load_schema("alert"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(alert_payload(raised, "site", "gw"))


def test_stage_assembles_batches_and_payload_validates():
    pump = load_any_profile(ROOT / "firmware_configs" / "acme_pump_plc_fw1.yaml")
    sig = energy_signals(asset(interval_s=10), {"plc": pump})
    assert not isinstance(sig, str)
    stage = EnergyStage(asset(interval_s=10), sig, None, "m1")
    reports = []
    values = {"motor_current": 40.0, "motor_voltage": 400.0, "power_factor": 0.7,
              "flow_rate": 100.0, "discharge_pressure": 5.0}  # fmt: skip
    for k in range(1, 35):
        # A poll that misses the power factor: held (within max age), then stale.
        skip = {"power_factor"} if 12 <= k < 18 else set()
        readings = tuple(Reading(p, v) for p, v in values.items() if p not in skip)
        reports += stage.push(Batch("plc", T0 + k, readings)).reports
    assert len(reports) == 3
    second = reports[1]  # [10, 20): samples 12, 13 held (max age 2.5 s), 14..17 stale
    assert second.samples == 10 and second.invalid_samples == 4
    validator = jsonschema.Draft202012Validator(
        load_schema("energy"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for r in reports:
        body = energy_payload(r, "site", "gw")
        validator.validate(body)
    assert body["product"] == {"unit": "m3", "amount": pytest.approx(100 / 3600 * 10, rel=1e-4)}
