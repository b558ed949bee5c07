"""Modbus sources (TCP and RTU over a pty pair) against real pymodbus simulator processes."""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from edge_agent.profiles import load_profile
from edge_agent.sources.modbus.config import ModbusRtuConfig as RtuConfig
from edge_agent.sources.modbus.config import ModbusTcpConfig as TcpConfig
from edge_agent.sources.modbus.profile import ModbusProfile
from edge_agent.sources.modbus.rtu import ModbusRtuSource, SerialLines
from edge_agent.sources.modbus.source import SourceStartupError
from edge_agent.sources.modbus.tcp import ModbusTcpSource
from edge_agent.types import Batch, Quality
from simulators.process import start_modbus_rtu_sim, start_modbus_sim, start_sim
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

FW1 = ROOT / "firmware_configs" / "acme_pump_plc_fw1.yaml"
FW2 = ROOT / "firmware_configs" / "acme_pump_plc_fw2.yaml"
NUMERIC_FW2 = [p.name for p in load_profile(FW2).points if p.is_numeric]


def tcp_cfg(port: int, **kw: object) -> TcpConfig:
    base: dict[str, object] = {
        "type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": port,
        "profile": "x", "poll_interval_s": 0.1, "timeout_s": 0.5,
        "backoff": {"initial_s": 0.1, "max_s": 0.5},
    }  # fmt: skip
    return TcpConfig.model_validate(base | kw)


async def collect(source, n: int, predicate=lambda b: True, limit_s: float = 20) -> list[Batch]:  # type: ignore[no-untyped-def]
    out: list[Batch] = []

    async def run() -> None:
        async for b in source.batches():
            if predicate(b):
                out.append(b)
                if len(out) >= n:
                    return

    await asyncio.wait_for(run(), limit_s)
    return out


def good(b: Batch) -> bool:
    return all(r.quality is Quality.GOOD for r in b.readings)


async def test_fw2_all_four_tables_bits_and_strings_over_tcp(tmp_path: Path) -> None:
    sim = start_modbus_sim(FW2, port=0, log=tmp_path / "sim.log")
    try:
        profile = load_profile(FW2)
        source = ModbusTcpSource(tcp_cfg(sim.port), profile, NUMERIC_FW2)
        # input 100-119, holding 0, coil 0, discrete 0-1: four requests for 15 points.
        assert len(source.blocks) == 4
        async with source:
            (batch,) = await collect(source, 1, good)
        values = {r.point: r.value for r in batch.readings}
        assert set(values) == set(NUMERIC_FW2)
        assert 30 < values["motor_current"] < 200  # CDAB float decoded right, not garbage
        assert 350 < values["motor_voltage"] < 450
        assert 10 < values["fluid_temperature"] < 60  # int32 * 0.01
        assert values["run_hours"] == 12000
        assert values["motor_running"] == 1 and values["alarm_active"] == 0
        assert values["run_command"] == 1 and values["overload_trip"] == 0
        assert values["level_switch"] == 1
        assert source.stats.identity == {"serial_number": "SIM-0001", "firmware_text": "sim"}
    finally:
        sim.stop()


async def test_exception_response_names_register_and_signal_others_stay_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = start_modbus_sim(FW1, port=0, log=tmp_path / "sim.log")
    try:
        data = load_profile(FW1).model_dump()
        # Register 18 is past the device's map (0-17) but close enough to be merged into one read.
        data["points"] = [*data["points"], {"name": "ghost", "table": "holding", "address": 18}]
        profile = ModbusProfile.model_validate(data)
        source = ModbusTcpSource(tcp_cfg(sim.port), profile, ["motor_current", "ghost"])
        assert len(source.blocks) == 1
        async with source:
            first, second = await collect(source, 2)
        assert all(r.quality is Quality.BAD for r in first.readings)
        # The merged read was split: the good point recovers, the exception names the ghost.
        q = {r.point: r.quality for r in second.readings}
        assert q == {"motor_current": Quality.GOOD, "ghost": Quality.BAD}
        assert source.stats.exceptions == 2 and len(source.blocks) == 2
        assert "holding registers 0-18 (motor_current, ghost)" in caplog.text
        assert "exception 2 (ILLEGAL DATA ADDRESS) reading holding registers 18-18 (ghost)" in (
            caplog.text
        )
        strict = ModbusTcpSource(tcp_cfg(sim.port, strict=True), profile, ["ghost"])
        with pytest.raises(SourceStartupError, match="ghost"):
            async with strict:
                pass
    finally:
        sim.stop()


async def test_one_request_per_point_switch(tmp_path: Path) -> None:
    sim = start_modbus_sim(FW1, port=0, log=tmp_path / "sim.log")
    try:
        points = ["motor_current", "motor_voltage", "vibration_de"]
        merged = ModbusTcpSource(tcp_cfg(sim.port), load_profile(FW1), points)
        split = ModbusTcpSource(tcp_cfg(sim.port, merge_reads=False), load_profile(FW1), points)
        for source, requests in ((merged, 1), (split, 3)):
            async with source:
                await collect(source, 2, good)
            assert source.stats.requests == requests * source.stats.polls
    finally:
        sim.stop()


async def _silent_server() -> tuple[asyncio.Server, int]:
    """A 'device' that accepts connections and never answers (a hung PLC)."""

    async def swallow(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_slow_device_does_not_stall_a_device_on_another_connection(tmp_path: Path) -> None:
    sim = start_modbus_sim(FW1, port=0, log=tmp_path / "sim.log")
    silent, silent_port = await _silent_server()
    try:
        fast = ModbusTcpSource(tcp_cfg(sim.port), load_profile(FW1), ["motor_current"])
        slow_cfg = tcp_cfg(silent_port, name="hung", timeout_s=2.0)
        slow = ModbusTcpSource(slow_cfg, load_profile(FW1), ["motor_current"])
        async with fast, slow:
            t0 = time.monotonic()
            slow_task = asyncio.create_task(collect(slow, 1))
            batches = await collect(fast, 10, good)
            elapsed = time.monotonic() - t0
            slow_batches = await slow_task
        # 10 polls at 0.1 s while the other device needs 2 s to time out.
        assert elapsed < 1.9
        assert [r.quality for r in slow_batches[0].readings] == [Quality.BAD]
        assert slow.stats.timeouts == 1
        assert batches[-1].ts - batches[0].ts == pytest.approx(0.9, abs=0.05)
    finally:
        silent.close()
        sim.stop()


async def test_server_restart_is_survived_with_data_resuming(tmp_path: Path) -> None:
    sim = start_modbus_sim(FW1, port=0, log=tmp_path / "sim.log")
    port = sim.port
    source = ModbusTcpSource(tcp_cfg(port), load_profile(FW1), ["motor_current"])
    try:
        async with source:
            await collect(source, 2, good)
            sim.stop()
            await collect(source, 2, lambda b: not good(b))
            sim = start_modbus_sim(FW1, port=port, log=tmp_path / "sim.log")
            await collect(source, 2, good)
        assert source.stats.reconnects >= 2
    finally:
        sim.stop()


def rtu_cfg(path: str, unit: int, name: str) -> RtuConfig:
    return RtuConfig.model_validate(
        {
            "type": "modbus_rtu", "name": name, "serial_port": path, "unit_id": unit,
            "profile": "x", "poll_interval_s": 0.2, "timeout_s": 0.5, "baudrate": 19200,
            "backoff": {"initial_s": 0.1, "max_s": 0.5},
        }
    )  # fmt: skip


async def test_rtu_over_a_pty_two_units_share_the_line_and_an_absent_unit_does_not_disturb(
    tmp_path: Path,
) -> None:
    sim = start_modbus_rtu_sim(FW2, units=(1, 2), seed=3, log=tmp_path / "sim.log")
    try:
        profile = load_profile(FW2)
        lines = SerialLines()
        pumps = [
            ModbusRtuSource(rtu_cfg(sim.address, u, f"pump{u}"), profile, NUMERIC_FW2, lines)
            for u in (1, 2)
        ]
        ghost = ModbusRtuSource(rtu_cfg(sim.address, 9, "ghost"), profile, ["motor_current"], lines)
        assert pumps[0].link is pumps[1].link is ghost.link  # one port, opened once
        async with pumps[0], pumps[1], ghost:
            results = await asyncio.gather(
                collect(pumps[0], 3, good), collect(pumps[1], 3, good), collect(ghost, 2)
            )
        one, two = ({r.point: r.value for r in res[-1].readings} for res in results[:2])
        assert 30 < one["motor_current"] < 200 and 30 < two["motor_current"] < 200
        assert one["motor_current"] != two["motor_current"]  # two different pumps
        assert all(r.quality is Quality.BAD for b in results[2] for r in b.readings)
        # pymodbus answers for an absent unit with an exception; the line is not reopened for it.
        assert ghost.stats.exceptions >= 2 and ghost.link.connects == 1
    finally:
        sim.stop()


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll not installed")
def test_stock_client_mbpoll_reads_the_tcp_simulator(tmp_path: Path) -> None:
    sim = start_modbus_sim(FW1, port=0, log=tmp_path / "sim.log")
    try:
        # Holding registers 1-based in mbpoll: reference 1 = address 0; float, big-endian words.
        out = subprocess.run(
            ["mbpoll", "-m", "tcp", "-p", str(sim.port), "-a", "1", "-t", "4:float", "-B",
             "-r", "1", "-c", "1", "-1", "127.0.0.1"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("[1]:"))
        assert 30 < float(line.split(":")[1]) < 200
        assert math.isfinite(float(line.split(":")[1]))
    finally:
        sim.stop()


def test_strict_agent_exits_2_naming_signals_the_device_does_not_have(
    tmp_path: Path, trained_bundle, mosquitto
) -> None:
    import sys

    import yaml

    from tests.conftest import agent_config

    sim = start_modbus_sim(FW1, port=0, log=tmp_path / "sim.log")
    try:
        path = agent_config(
            tmp_path / "agent.yaml", sim_port=sim.port, broker_port=mosquitto.port,
            bundle=trained_bundle.directory,
        )  # fmt: skip
        cfg = yaml.safe_load(path.read_text())
        # Firmware 2's map (input registers 100+) against a firmware 1 device.
        cfg["sources"][0].update(profile="acme_pump_plc_fw2", strict=True)
        path.write_text(yaml.safe_dump(cfg))
        out = subprocess.run(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert "input registers 100-101 (motor_current): exception 2 (ILLEGAL DATA ADDRESS)" in (
            out.stderr
        )
        assert "Traceback" not in out.stderr
    finally:
        sim.stop()


async def test_offline_scenario_device_drops_off_and_comes_back(tmp_path: Path) -> None:
    # At 30x: online for 1 s of wall time, offline for 2 s (60 simulated s), then back.
    sim = start_modbus_sim(FW1, port=0, scenario="offline", at=30.0, speed=30.0,
                           log=tmp_path / "sim.log")  # fmt: skip
    try:
        source = ModbusTcpSource(tcp_cfg(sim.port), load_profile(FW1), ["motor_current"])
        async with source:
            await collect(source, 1, good)
            await collect(source, 1, lambda b: not good(b))
            await collect(source, 1, good, limit_s=20)
        assert source.stats.reconnects >= 2
    finally:
        sim.stop()


async def test_second_machine_compressor_served_over_modbus(tmp_path: Path) -> None:
    profile_path = ROOT / "firmware_configs" / "acme_compressor_fw1.yaml"
    sim = start_sim(
        "modbus", ["--profile", str(profile_path), "--port", "0", "--machine", "compressor"],
        log=tmp_path / "sim.log",
    )  # fmt: skip
    try:
        profile = load_profile(profile_path)
        names = profile.point_names()
        source = ModbusTcpSource(tcp_cfg(sim.port), profile, names)
        async with source:
            (batch,) = await collect(source, 1, good)
        v = {r.point: r.value for r in batch.readings}
        assert 6.5 < v["discharge_pressure"] < 8.2 and v["run_hours"] == 30000
        assert v["loaded"] in (0.0, 1.0) and 20 < v["motor_current"] < 110
    finally:
        sim.stop()


async def test_a_unit_that_ran_before_it_serves(tmp_path: Path) -> None:
    """`--start`: the pump has run 3.5 simulated hours (its training stretch, say) before it serves;
    its hour meter says so and simulated time 0 lies that far back on the wall clock."""
    sim = start_modbus_sim(
        FW1, port=0, speed=100.0, start_at=3.5 * 3600.0, log=tmp_path / "sim.log"
    )
    try:
        assert sim.start < time.time() - 3.5 * 3600.0 / 100.0 + 1.0  # sim t = 0 was 126 s ago
        source = ModbusTcpSource(tcp_cfg(sim.port), load_profile(FW1), ["run_hours"])
        async with source:
            (batch,) = await collect(source, 1, good)
        assert batch.readings[0].value == 12_003  # 12,000 h at t = 0, plus 3.5 (floored)
    finally:
        sim.stop()
