"""Serve a simulated device as a real OPC UA server (asyncua), in real or accelerated time.

Variables are created from an OPC UA device profile (node ids, engineering units) under
Objects/<model>, with an EURange so clients can use percent deadbands. Two diagnostic variables
always exist for fault tests: `ns=2;s=Diagnostics.BadSensor` (status BadSensorFailure) and
`ns=2;s=Diagnostics.Uncertain` (status UncertainLastUsableValue).
With `secure_dir`, a self-signed server certificate is generated there and the endpoints offer
Basic256Sha256 Sign and SignAndEncrypt besides None; with `users`, only those username/password
pairs may open a session.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes

from edge_agent.sources.opcua.profile import OpcUaProfile
from simulators.machine import Machine
from simulators.scenarios import is_offline

NAMESPACE = "urn:acme-fluidtech:pumpguard"
DIAGNOSTICS = {
    "ns=2;s=Diagnostics.BadSensor": StatusCodes.BadSensorFailure,
    "ns=2;s=Diagnostics.Uncertain": StatusCodes.UncertainLastUsableValue,
}
# Plausible full-scale ranges for EURange (percent deadband is relative to them).
EU_RANGE = {"V": (0.0, 600.0), "A": (0.0, 200.0), "bar": (0.0, 10.0), "m3/h": (0.0, 200.0)}


class _Users:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        return None


def _make_certificate(secure_dir: Path, host: str) -> tuple[Path, Path]:
    """A self-signed server certificate and key, made with the cryptography package."""
    from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    secure_dir.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    cert = generate_self_signed_app_certificate(
        key,
        "edge-sim",
        {"countryName": "CH", "organizationName": "edge-agent simulators"},
        [
            x509.UniformResourceIdentifier("urn:edge-agent:edge-sim"),
            x509.DNSName(host),
            x509.DNSName(socket.gethostname()),
        ],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    cert_path, key_path = secure_dir / "server_cert.der", secure_dir / "server_key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def _build(
    profile: OpcUaProfile,
    endpoint: str,
    secure_dir: Path | None,
    users: dict[str, str] | None,
    host: str,
) -> tuple[Server, dict[str, ua.NodeId]]:
    server = Server(user_manager=_Users(users) if users else None)  # type: ignore[arg-type]
    await server.init()
    server.set_endpoint(endpoint)
    server.set_server_name(f"edge-sim {profile.vendor} {profile.model}")
    await server.set_application_uri("urn:edge-agent:edge-sim")
    policies = [ua.SecurityPolicyType.NoSecurity]
    if secure_dir is not None:
        cert, key = _make_certificate(secure_dir, host)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        policies += [
            ua.SecurityPolicyType.Basic256Sha256_Sign,
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
        ]
    server.set_security_policy(policies)
    if users:
        server.set_security_IDs(["Username"])
    idx = await server.register_namespace(NAMESPACE)
    device = await server.nodes.objects.add_object(idx, profile.model.replace(" ", ""))
    nodes: dict[str, ua.NodeId] = {}
    for n in profile.nodes:
        var = await device.add_variable(ua.NodeId.from_string(n.node_id), n.name, 0.0)
        eu = ua.EUInformation()
        eu.DisplayName = ua.LocalizedText(n.unit)
        eu.Description = ua.LocalizedText(n.unit)
        eu.NamespaceUri = "http://www.opcfoundation.org/UA/units/un/cefact"
        await var.add_property(idx, "EngineeringUnits", eu)
        lo, hi = EU_RANGE.get(n.unit, (0.0, 100.0))
        await var.add_property(idx, "EURange", ua.Range(Low=lo, High=hi))
        nodes[n.name] = var.nodeid
    diag = await server.nodes.objects.add_object(idx, "Diagnostics")
    for node_id, code in DIAGNOSTICS.items():
        var = await diag.add_variable(ua.NodeId.from_string(node_id), node_id.split(".")[-1], 1.0)
        await server.write_attribute_value(
            var.nodeid,
            ua.DataValue(
                ua.Variant(1.0, ua.VariantType.Double), StatusCode=ua.StatusCode(ua.UInt32(code))
            ),
        )
    return server, nodes


async def serve_opcua(
    profile: OpcUaProfile,
    sim: Machine,
    host: str,
    port: int,
    speed: float,
    tick: float,
    duration: float | None = None,
    secure_dir: Path | None = None,
    users: dict[str, str] | None = None,
) -> None:
    from simulators.broker import free_port

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    for attempt in range(5):  # a free port can be taken between picking and binding
        bound = port or free_port()
        endpoint = f"opc.tcp://{host}:{bound}/edge-sim/"
        server, nodes = await _build(profile, endpoint, secure_dir, users, host)
        try:
            await server.start()
            break
        except OSError:
            if port or attempt == 4:
                raise
    start = time.time()
    extra = f" cert={secure_dir / 'server_cert.der'}" if secure_dir is not None else ""
    print(f"READY opcua {endpoint} start={start:.6f} speed={speed}{extra}", flush=True)
    running = True
    try:
        k = 0
        while duration is None or time.time() - start < duration:
            k += 1
            await _sleep_until(start + k * tick)
            target = (time.time() - start) * speed
            if target > sim.state.t:
                sim.step(target - sim.state.t)
            if is_offline(sim.scenario, sim.state.t):
                if running:  # the device drops off the network (sessions break) ...
                    await server.stop()
                    running = False
                continue
            if not running:  # ... and comes back, as after a power cycle: a fresh server
                server, nodes = await _build(profile, endpoint, secure_dir, users, host)
                await server.start()
                running = True
            values = sim.measure()
            now = ua.DateTime.now(UTC)
            for name, node_id in nodes.items():
                v = float(values.get(name, 0.0))
                await server.write_attribute_value(
                    node_id,
                    ua.DataValue(
                        ua.Variant(v, ua.VariantType.Double),
                        SourceTimestamp=now,
                        ServerTimestamp=now,
                    ),
                )
    finally:
        if running:
            await server.stop()
        print("STOPPED", file=sys.stderr, flush=True)


async def _sleep_until(t: float) -> None:
    import asyncio

    await asyncio.sleep(max(0.0, t - time.time()))
