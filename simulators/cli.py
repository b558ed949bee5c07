"""`edge-sim`: serve simulated devices over real protocols, or record their data to CSV."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from pydantic import ValidationError

from edge_agent.profiles import load_any_profile
from edge_agent.sources.modbus.profile import ModbusProfile
from edge_agent.sources.mqtt.profile import MqttProfile
from edge_agent.sources.opcua.profile import OpcUaProfile
from edge_agent.sources.profile_base import ProfileBase
from simulators.compressor import COMPRESSOR_SCENARIOS, CompressorSimulator
from simulators.machine import Machine, run_up
from simulators.pump import PumpSimulator
from simulators.scenarios import SCENARIOS, Scenario, make_scenario


def _profile(path: str) -> ProfileBase:
    try:
        return load_any_profile(Path(path))
    except (OSError, ValidationError) as exc:
        print(f"edge-sim: cannot load profile {path}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# Which profile protocol each sub-command serves.
_PROTOCOL = {"modbus": "modbus", "modbus-rtu": "modbus", "record": "modbus", "opcua": "opcua",
             "mqtt": "mqtt"}  # fmt: skip


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True, help="device profile YAML (firmware_configs/...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--machine", choices=["pump", "compressor"], default="pump",
        help="pump skid (all scenarios) or screw compressor (air_leak, cooler_fouling, offline)",
    )  # fmt: skip
    p.add_argument(
        "--scenario", choices=["none", *SCENARIOS, *COMPRESSOR_SCENARIOS], default="none"
    )
    p.add_argument("--at", type=float, default=600.0, help="fault onset, simulated seconds")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    p.add_argument("--tick", type=float, default=0.01, help="physics step, wall seconds")


def _machine(kind: str, seed: int, scenario: str, at: float) -> Machine:
    if kind == "compressor":
        chosen: Scenario | None = None
        if scenario in COMPRESSOR_SCENARIOS:
            chosen = COMPRESSOR_SCENARIOS[scenario](name=scenario, at=at)
        elif scenario in ("none", "offline"):
            chosen = make_scenario(scenario, at)
        else:
            raise SystemExit(f"edge-sim: scenario {scenario} is for the pump, not the compressor")
        return CompressorSimulator(seed, chosen)
    if scenario in COMPRESSOR_SCENARIOS:
        raise SystemExit(f"edge-sim: scenario {scenario} is for the compressor, not the pump")
    return PumpSimulator(seed, make_scenario(scenario, at))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edge-sim", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("modbus", help="serve a pump skid PLC over Modbus TCP")
    _common(m)
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument("--port", type=int, default=5020, help="0 picks a free port (printed)")
    m.add_argument("--unit", type=int, default=1)
    m.add_argument("--duration", type=float, default=None, help="stop after N wall seconds")
    m.add_argument(
        "--start", type=float, default=0.0,
        help="simulated seconds the unit has run before it serves (e.g. after its training day)",
    )  # fmt: skip
    rtu = sub.add_parser("modbus-rtu", help="serve pump PLCs on a serial line (Modbus RTU)")
    _common(rtu)
    rtu.add_argument(
        "--serial-port", default=None, help="serial device; default: a new pty pair (printed)"
    )
    rtu.add_argument("--baudrate", type=int, default=19200)
    rtu.add_argument("--units", default="1", help="comma-separated unit ids, one pump each")
    rtu.add_argument("--duration", type=float, default=None, help="stop after N wall seconds")
    r = sub.add_parser("record", help="write a CSV of (normal or faulty) operation")
    _common(r)
    r.add_argument("--out", required=True, type=Path)
    r.add_argument("--samples", type=int, default=3600)
    r.add_argument("--period", type=float, default=1.0, help="sample period, wall seconds")
    r.add_argument("--warmup", type=float, default=0.0, help="simulated seconds to run first")
    o = sub.add_parser("opcua", help="serve a pump skid controller over OPC UA")
    _common(o)
    o.add_argument("--host", default="127.0.0.1")
    o.add_argument("--port", type=int, default=4840, help="0 picks a free port (printed)")
    o.add_argument("--duration", type=float, default=None, help="stop after N wall seconds")
    o.add_argument(
        "--secure-dir", type=Path, default=None,
        help="generate a server certificate here and offer Basic256Sha256 Sign/SignAndEncrypt",
    )  # fmt: skip
    o.add_argument("--user", action="append", default=[], help="NAME:PASSWORD (repeatable)")
    q = sub.add_parser("mqtt", help="a sensor gateway publishing JSON to an MQTT broker")
    _common(q)
    q.add_argument("--broker-host", default="127.0.0.1")
    q.add_argument("--broker-port", type=int, default=1883)
    q.add_argument("--period", type=float, default=1.0, help="publish period, wall seconds")
    q.add_argument("--asset", default="pump-1", help="asset name in the topics")
    q.add_argument("--duration", type=float, default=None, help="stop after N wall seconds")
    args = ap.parse_args(argv)

    any_profile = _profile(args.profile)
    if any_profile.protocol != _PROTOCOL[args.cmd]:
        ap.error(f"edge-sim {args.cmd} needs a {_PROTOCOL[args.cmd]} profile")
    if args.speed <= 0 or args.tick <= 0:
        ap.error("--speed and --tick must be positive")
    sim = _machine(args.machine, args.seed, args.scenario, args.at)
    if isinstance(any_profile, OpcUaProfile):
        from simulators.opcua_server import serve_opcua

        users = dict(u.split(":", 1) for u in args.user if ":" in u)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve_opcua(
                    any_profile, sim, args.host, args.port, args.speed, args.tick, args.duration,
                    args.secure_dir, users or None,
                )
            )  # fmt: skip
        return 0
    if isinstance(any_profile, MqttProfile):
        from simulators.mqtt_gateway import publish

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                publish(
                    any_profile, sim, args.broker_host, args.broker_port, args.asset, args.period,
                    args.speed, args.tick, args.duration,
                )
            )  # fmt: skip
        return 0
    profile = any_profile
    assert isinstance(profile, ModbusProfile)  # the protocol check above
    if args.cmd == "record":
        from simulators.record import record

        record(
            profile,
            args.out,
            args.samples,
            args.period,
            args.seed,
            args.speed,
            args.tick,
            sim=sim,
            warmup=args.warmup,
        )
        print(f"wrote {args.samples} rows to {args.out}")
        return 0
    if args.cmd == "modbus-rtu":
        from simulators.modbus_server import serve_rtu

        try:
            units = [int(u) for u in args.units.split(",")]
        except ValueError:
            ap.error("--units must be comma-separated integers")
        # Each unit is its own pump (seed + i): same model, different unit characteristics.
        sims = {u: _machine(args.machine, args.seed + i, args.scenario, args.at)
                for i, u in enumerate(units)}  # fmt: skip
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve_rtu(
                    profile, sims, args.serial_port, args.baudrate, args.speed, args.tick,
                    args.duration,
                )
            )  # fmt: skip
        return 0
    from simulators.modbus_server import serve

    if args.start < 0:
        ap.error("--start must be >= 0")
    run_up(sim, args.seed, args.start)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                profile, sim, args.host, args.port, args.unit, args.speed, args.tick, args.duration
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
