"""OPC UA source against the asyncua simulator in a subprocess (free ports, bounded waits)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.profiles import load_any_profile
from edge_agent.sources.base import SourceStartupError
from edge_agent.sources.opcua.config import OpcUaConfig
from edge_agent.sources.opcua.profile import OpcUaProfile
from edge_agent.sources.opcua.source import OpcUaSource
from edge_agent.types import Batch, Quality
from simulators.process import SimProcess, start_sim
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

PROFILE_PATH = ROOT / "firmware_configs" / "acme_pump_opcua.yaml"
PROFILE = load_any_profile(PROFILE_PATH)
assert isinstance(PROFILE, OpcUaProfile)
SIGNALS = PROFILE.point_names()


def start_opcua(tmp_path: Path, *extra: str, port: int = 0, speed: float = 1.0) -> SimProcess:
    args = ["--profile", str(PROFILE_PATH), "--port", str(port), "--tick", "0.05", *extra]
    return start_sim("opcua", args, speed=speed, log=tmp_path / "sim.log")


def cfg(endpoint: str, **kw: object) -> OpcUaConfig:
    base: dict[str, object] = {
        "type": "opcua", "name": "ua", "endpoint": endpoint, "profile": "x",
        "poll_interval_s": 0.1, "publishing_interval_ms": 50, "sampling_interval_ms": 50,
        "timeout_s": 2.0, "backoff": {"initial_s": 0.2, "max_s": 0.5},
    }  # fmt: skip
    return OpcUaConfig.model_validate(base | kw)


async def first(source: OpcUaSource, predicate, limit_s: float = 20) -> Batch:  # type: ignore[no-untyped-def]
    async def run() -> Batch:
        async for b in source.batches():
            if predicate(b):
                return b
        raise AssertionError("unreachable")

    return await asyncio.wait_for(run(), limit_s)


def quality(b: Batch) -> dict[str, Quality]:
    return {r.point: r.quality for r in b.readings}


def all_good(names: list[str]):  # type: ignore[no-untyped-def]
    return lambda b: all(quality(b)[n] is Quality.GOOD for n in names)


def with_diagnostics() -> OpcUaProfile:
    data = PROFILE.model_dump()
    data["nodes"] = [
        *data["nodes"],
        {"name": "bad_sensor", "node_id": "ns=2;s=Diagnostics.BadSensor"},
        {"name": "uncertain", "node_id": "ns=2;s=Diagnostics.Uncertain"},
        {"name": "missing", "node_id": "ns=2;s=No.Such.Node"},
    ]
    return OpcUaProfile.model_validate(data)


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_values_status_codes_and_a_missing_node(tmp_path: Path, mode: str) -> None:
    sim = start_opcua(tmp_path)
    try:
        profile = with_diagnostics()
        names = [*SIGNALS, "bad_sensor", "uncertain", "missing"]
        deadband = {"type": "absolute", "value": 0.01} if mode == "subscribe" else None
        source = OpcUaSource(cfg(sim.address, mode=mode, deadband=deadband), profile, names)
        async with source:
            batch = await first(source, all_good(SIGNALS))
            # Let a few more notifications arrive, then check the values are live.
            later = await first(source, lambda b: b.ts > batch.ts + 0.5)
        values = {r.point: r.value for r in later.readings}
        q = quality(later)
        assert 30 < values["motor_current"] < 200 and 350 < values["motor_voltage"] < 450
        assert q["bad_sensor"] is Quality.BAD
        assert q["uncertain"] is Quality.UNCERTAIN
        assert q["missing"] is Quality.BAD and source.stats.bad_nodes == 1
        # Source timestamps come from the server's clock, close to ours (same host).
        stamp = next(r.source_ts for r in later.readings if r.point == "motor_current")
        assert stamp is not None and abs(stamp - later.ts) < 5
        if mode == "subscribe":
            assert source.stats.notifications > len(SIGNALS)
        else:
            assert source.stats.reads >= 2
    finally:
        sim.stop()


async def test_strict_start_names_the_unknown_node(tmp_path: Path) -> None:
    sim = start_opcua(tmp_path)
    try:
        source = OpcUaSource(cfg(sim.address, strict=True), with_diagnostics(), ["missing"])
        with pytest.raises(SourceStartupError, match=r"signal 'missing'.*No\.Such\.Node"):
            async with source:
                pass
    finally:
        sim.stop()


async def test_server_restart_brings_session_and_subscription_back(tmp_path: Path) -> None:
    sim = start_opcua(tmp_path)
    port = sim.port
    source = OpcUaSource(cfg(sim.address), PROFILE, SIGNALS)
    try:
        async with source:
            await first(source, all_good(SIGNALS))
            sim.stop()
            await first(source, lambda b: all(r.quality is Quality.BAD for r in b.readings))
            sim = start_opcua(tmp_path, port=port)
            before = source.stats.notifications
            await first(source, all_good(SIGNALS), limit_s=30)
            assert source.stats.sessions >= 2 and source.stats.notifications > before
    finally:
        sim.stop()


def client_certificate(d: Path) -> tuple[Path, Path]:
    from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = generate_private_key()
    cert = generate_self_signed_app_certificate(
        key, "edge-agent", {"organizationName": "edge-agent tests"},
        [x509.UniformResourceIdentifier("urn:freeopcua:client"), x509.DNSName("localhost")],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )  # fmt: skip
    (d / "client_cert.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (d / "client_key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return d / "client_cert.der", d / "client_key.pem"


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
async def test_basic256sha256_with_client_certificate_and_password(
    tmp_path: Path, mode: str
) -> None:
    sim = start_opcua(tmp_path, "--secure-dir", str(tmp_path / "pki"), "--user", "operator:s3cret")
    try:
        cert, key = client_certificate(tmp_path)
        (tmp_path / "pw").write_text("s3cret\n")
        security = {"policy": "Basic256Sha256", "mode": mode, "certificate": str(cert),
                    "private_key": str(key), "server_certificate": sim.extra["cert"]}  # fmt: skip
        source = OpcUaSource(
            cfg(sim.address, security=security, username="operator", password_file=tmp_path / "pw"),
            PROFILE,
            ["motor_current"],
        )
        async with source:
            await first(source, all_good(["motor_current"]))
        wrong = OpcUaSource(
            cfg(sim.address, security=security, username="operator"), PROFILE, ["motor_current"]
        )
        async with wrong:  # no password: the session is refused, reported bad, never raised
            await asyncio.sleep(1.0)
            b = await first(wrong, lambda b: True)
        assert quality(b) == {"motor_current": Quality.BAD} and wrong.stats.sessions == 0
    finally:
        sim.stop()


def test_stock_client_uaread_reads_the_simulator(tmp_path: Path) -> None:
    uaread = Path(sys.executable).parent / "uaread"
    if not uaread.exists():
        pytest.skip("asyncua console scripts not installed")
    sim = start_opcua(tmp_path)
    try:
        out = subprocess.run(
            [str(uaread), "-u", sim.address, "-n", "ns=2;s=PumpSkid.Motor.Voltage"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert 350 < float(out.stdout.strip().splitlines()[-1]) < 450
    finally:
        sim.stop()


async def test_offline_scenario_session_comes_back_by_itself(tmp_path: Path) -> None:
    sim = start_opcua(tmp_path, "--scenario", "offline", "--at", "30", speed=30.0)
    try:
        source = OpcUaSource(cfg(sim.address), PROFILE, ["motor_current"])
        async with source:
            await first(source, all_good(["motor_current"]))
            await first(source, lambda b: quality(b)["motor_current"] is Quality.BAD)
            await first(source, all_good(["motor_current"]), limit_s=30)
        assert source.stats.sessions >= 2
    finally:
        sim.stop()
