"""OPC UA security against an independent, strict server: node-opcua (tests/interop/node_opcua),
not the asyncua library the agent is built on.

The server checks what plant servers check: the client certificate must be in its trusted folder
(copied there as an administrator would), its subjectAltName URI must equal the applicationUri the
client announces, user names and passwords are verified. One server serves the whole module (it
takes several seconds to start); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import selectors
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.cli import main as cli_main
from edge_agent.config import load_config
from edge_agent.profiles import load_any_profile
from edge_agent.sources.base import SourceStartupError
from edge_agent.sources.opcua.certs import (
    ClientIdentity,
    application_uri,
    load_certificate,
    thumbprint,
)
from edge_agent.sources.opcua.config import OpcUaConfig
from edge_agent.sources.opcua.profile import OpcUaProfile
from edge_agent.sources.opcua.source import OpcUaSource
from edge_agent.types import Batch, Quality
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SERVER_DIR = ROOT / "tests" / "interop" / "node_opcua"
PROFILE_PATH = ROOT / "firmware_configs" / "acme_pump_opcua.yaml"
PROFILE = load_any_profile(PROFILE_PATH)
assert isinstance(PROFILE, OpcUaProfile)
POINTS = ["motor_current", "motor_voltage", "discharge_pressure"]  # what server.js serves
USER, PASSWORD = "operator", "s3cret"
READY_TIMEOUT_S = 90.0  # node-opcua loads its whole address space first


@dataclass
class NodeServer:
    proc: subprocess.Popen[str]
    endpoint: str
    certificate: Path  # the server's own certificate (PEM)
    trusted: Path  # our client folder whose client.der the server trusts
    untrusted: Path  # another client folder made by opcua-cert, not trusted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _opcua_cert(out: Path, *extra: str) -> Path:
    assert cli_main(["opcua-cert", "--out", str(out), "--dns", "localhost", *extra]) == 0
    return out


def _node_available() -> str | None:
    if shutil.which("node") is None:
        return "Node.js is not installed (bash dev.sh test installs it)"
    if not (SERVER_DIR / "node_modules" / "node-opcua").is_dir():
        return f"node-opcua is not installed in {SERVER_DIR} (bash dev.sh test runs npm ci)"
    return None


@pytest.fixture(scope="module")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeServer]:
    missing = _node_available()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    d = tmp_path_factory.mktemp("node_opcua")
    trusted = _opcua_cert(d / "agent", "--ip", "127.0.0.1")
    untrusted = _opcua_cert(d / "stranger")
    log = (d / "server.log").open("w")
    port = _free_port()
    cmd = ["node", str(SERVER_DIR / "server.js"), "--port", str(port), "--pki", str(d / "pki"),
           "--trust", "explicit", "--trust-client", str(trusted / "client.der"),
           "--user", f"{USER}:{PASSWORD}"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
    )
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_TIMEOUT_S
    ready = ""
    while not ready and (left := deadline - time.monotonic()) > 0 and sel.select(left):
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("READY node-opcua "):
            ready = line
    sel.close()
    try:
        if not ready:
            log.flush()
            tail = (d / "server.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"node-opcua server not ready within {READY_TIMEOUT_S} s:\n{tail}")
        fields = ready.split()
        extra = dict(f.split("=", 1) for f in fields[3:])
        yield NodeServer(proc, fields[2], Path(extra["certificate"]), trusted, untrusted)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def config(server: NodeServer, client: Path | None, tmp_path: Path, **kw: Any) -> OpcUaConfig:
    base: dict[str, Any] = {
        "type": "opcua", "name": "ua", "endpoint": server.endpoint, "profile": "x",
        "poll_interval_s": 0.1, "publishing_interval_ms": 100, "sampling_interval_ms": 100,
        "timeout_s": 3.0, "backoff": {"initial_s": 0.1, "max_s": 0.2, "jitter": 0.0},
    }  # fmt: skip
    if client is not None:
        base["security"] = {
            "policy": "Basic256Sha256", "mode": "SignAndEncrypt",
            "certificate": str(client / "client.der"),
            "private_key": str(client / "client_key.pem"),
            "server_certificate": str(server.certificate),
        }  # fmt: skip
    for key, value in kw.items():
        if key.startswith("security__"):
            base["security"][key.removeprefix("security__")] = value
        else:
            base[key] = value
    return OpcUaConfig.model_validate(base)


def password_file(tmp_path: Path, password: str) -> Path:
    p = tmp_path / "ua.pw"
    p.write_text(password + "\n")
    return p


async def until(source: OpcUaSource, predicate: Callable[[Batch], bool], limit_s: float) -> Batch:
    """The first batch matching `predicate` (batches come every poll interval), bounded."""

    async def run() -> Batch:
        async for b in source.batches():
            if predicate(b):
                return b
        raise AssertionError("unreachable")

    return await asyncio.wait_for(run(), limit_s)


def all_good(b: Batch) -> bool:
    return all(r.quality is Quality.GOOD for r in b.readings)


@pytest.mark.parametrize(
    ("policy", "mode", "user"),
    [
        ("Basic256Sha256", "SignAndEncrypt", True),
        ("Basic256Sha256", "Sign", False),
        ("None", "None", True),
        ("None", "None", False),
    ],
)
async def test_reads_values_with_a_certificate_made_by_opcua_cert(
    node_server: NodeServer, tmp_path: Path, policy: str, mode: str, user: bool
) -> None:
    login: dict[str, Any] = (
        {"username": USER, "password_file": password_file(tmp_path, PASSWORD)} if user else {}
    )
    if policy == "None":
        cfg = config(node_server, None, tmp_path, **login)
    else:
        cfg = config(node_server, node_server.trusted, tmp_path, security__mode=mode, **login)
    source = OpcUaSource(cfg, PROFILE, POINTS)
    if policy != "None":
        # The URI announced is the one in the certificate opcua-cert made (not asyncua's).
        in_cert = application_uri(load_certificate(node_server.trusted / "client.der"))
        assert source.identity.application_uri == in_cert
        assert in_cert == f"urn:{socket.gethostname()}:edge-agent"
    async with source:
        batch = await until(source, all_good, 30)
    values = {r.point: r.value for r in batch.readings}
    assert 39 < values["motor_current"] < 45 and 396 < values["motor_voltage"] < 404
    assert 5.9 < values["discharge_pressure"] < 6.5
    assert source.stats.sessions == 1 and source.stats.refusals == {}
    assert source.stats.offline_reason is None


def refused(kind: str, times: int = 1) -> Callable[[OpcUaSource], Callable[[Batch], bool]]:
    return lambda source: lambda b: source.stats.refusals.get(kind, 0) >= times


async def refusal_of(source: OpcUaSource, kind: str, times: int = 2) -> str:
    """Wait (bounded) until the session was refused `times` times for `kind`; the reason."""
    async with source:
        b = await until(source, refused(kind, times)(source), 30)
    assert all(r.quality is Quality.BAD for r in b.readings)
    assert source.stats.sessions == 0 and not source.stats.connected
    reason = source.stats.offline_reason
    assert reason is not None
    return reason


def records_with(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def test_untrusted_client_certificate_is_explained_once(
    node_server: NodeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    source = OpcUaSource(config(node_server, node_server.untrusted, tmp_path), PROFILE, POINTS)
    reason = await refusal_of(source, "client_untrusted", times=3)
    ours = thumbprint(load_certificate(node_server.untrusted / "client.der"))
    assert "does not trust" in reason and ours in reason and "trusted" in reason
    # Logged once although refused three times (rate-limited, once a minute per kind).
    assert len(records_with(caplog, "no session: ")) == 1


async def test_wrong_application_uri_is_refused_by_the_server(
    node_server: NodeServer, tmp_path: Path
) -> None:
    # `validate` refuses a URI that is not the certificate's, so announce asyncua's default the
    # way the agent did before: the server must refuse it.
    source = OpcUaSource(config(node_server, node_server.trusted, tmp_path), PROFILE, POINTS)
    default_uri = "urn:example.org:FreeOpcUa:opcua-asyncio"
    source.identity = ClientIdentity(default_uri, "edge-agent")
    source._context = dataclasses.replace(source._context, application_uri=default_uri)
    reason = await refusal_of(source, "uri_invalid")
    assert reason.startswith("BadCertificateUriInvalid: ") and default_uri in reason


async def test_wrong_password_is_explained(node_server: NodeServer, tmp_path: Path) -> None:
    cfg = config(
        node_server, node_server.trusted, tmp_path,
        username=USER, password_file=password_file(tmp_path, "wrong"),
    )  # fmt: skip
    source = OpcUaSource(cfg, PROFILE, POINTS)
    async with source:
        await until(
            source,
            lambda b: bool({"access_denied", "identity_rejected"} & set(source.stats.refusals)),
            30,
        )
    reason = source.stats.offline_reason
    assert reason is not None
    assert reason.split(":")[0] in {"BadUserAccessDenied", "BadIdentityTokenRejected"}
    assert f"user {USER!r}" in reason and "password_file" in reason


async def test_untrusted_server_certificate_is_refused_with_its_thumbprint(
    node_server: NodeServer, tmp_path: Path
) -> None:
    server_thumb = thumbprint(load_certificate(node_server.certificate))
    # Pinned: another certificate than the server's.
    other = node_server.untrusted / "client.der"
    cfg = config(node_server, node_server.trusted, tmp_path, security__server_certificate=other)
    reason = await refusal_of(OpcUaSource(cfg, PROFILE, POINTS), "server_untrusted")
    assert server_thumb in reason and "not the pinned one" in reason
    # A trust folder without the server's certificate: refused too.
    trust = tmp_path / "trusted"
    trust.mkdir()
    shutil.copy(other, trust / "other.der")
    cfg = config(
        node_server, node_server.trusted, tmp_path,
        security__server_certificate=None, security__trust_dir=trust,
    )  # fmt: skip
    reason = await refusal_of(OpcUaSource(cfg, PROFILE, POINTS), "server_untrusted")
    assert server_thumb in reason and str(trust) in reason
    # A strict source stops the start-up with the same words (exit 2 in the agent).
    strict = cfg.model_copy(update={"strict": True})
    with pytest.raises(SourceStartupError, match=f"source ua: refused: .*{server_thumb}"):
        async with OpcUaSource(strict, PROFILE, POINTS):
            pass
    # Once its certificate is in the folder, the agent connects (read at every connect).
    shutil.copy(node_server.certificate, trust / "server.pem")
    source = OpcUaSource(cfg, PROFILE, POINTS)
    async with source:
        await until(source, all_good, 30)


async def test_accepting_any_server_certificate_works_and_is_logged_insecure(
    node_server: NodeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    cfg = config(
        node_server, node_server.trusted, tmp_path,
        security__server_certificate=None, security__accept_any_server_certificate=True,
    )  # fmt: skip
    source = OpcUaSource(cfg, PROFILE, POINTS)
    async with source:
        await until(source, all_good, 30)
    assert len(records_with(caplog, "INSECURE: accept_any_server_certificate")) == 1


async def test_agent_publishes_the_reason_with_source_offline_and_counts_it(
    node_server: NodeServer, tmp_path: Path
) -> None:
    """Through the agent: a validated config file with relative paths, the event's
    details.reason, and edge_agent_source_errors{kind="refused_server_untrusted"}."""
    from edge_agent.agent import Agent

    shutil.copytree(node_server.trusted, tmp_path / "pki")
    shutil.copy(node_server.untrusted / "client.der", tmp_path / "pki" / "wrong-server.der")
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "identity": {"site": "s", "gateway": "g"},
                "sources": [
                    config(
                        node_server, Path("pki"), tmp_path,
                        security__server_certificate="pki/wrong-server.der",
                    ).model_dump(mode="json", exclude_none=True)
                    | {"profile": "acme_pump_opcua"}
                ],
                "assets": [
                    {"name": "pump-1", "sample_period_s": 1.0, "bundle": "bundle",
                     "signals": [{"name": p, "source": "ua"} for p in POINTS]}
                ],
                "upstream": {"outbox": {"dir": str(tmp_path / "state")}},
                "observability": {"metrics": {"port": 0}},
            }
        )
    )  # fmt: skip
    agent = Agent(load_config(path), [])
    events: asyncio.Queue[tuple[str, str, dict[str, Any] | None]] = asyncio.Queue()
    report = agent.report_event

    def capture(type_: str, message: str, severity: str = "warning", subject: str | None = None,
                details: dict[str, Any] | None = None) -> None:  # fmt: skip
        events.put_nowait((type_, message, details))
        report(type_, message, severity, subject, details)

    agent.report_event = capture  # type: ignore[method-assign]
    pump = asyncio.create_task(agent._pump(agent.sources[0]))
    try:
        type_, message, details = await asyncio.wait_for(events.get(), 30)
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    server_thumb = thumbprint(load_certificate(node_server.certificate))
    assert type_ == "source_offline" and details is not None
    assert server_thumb in details["reason"] and details["reason"] in message
    metrics = agent.metrics.render().decode()
    counter = 'edge_agent_source_errors_total{kind="refused_server_untrusted",source="ua"} 1.0'
    assert counter in metrics
