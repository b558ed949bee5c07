"""(c) A broker with TLS (CA and certificate generated here) and password authentication: the
publisher connects over MQTT 5 and 3.1.1; a wrong password is a clear, rate-limited error with
backoff and no crash. Also: an MQTT 5 ACL denial (PUBACK reason code 0x87) dead-letters that
message, reports it as an event, and does not hold up the rest of the queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import subprocess
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_agent.config import TlsConfig
from edge_agent.upstream.mqtt import MqttPublisher
from simulators.broker import Mosquitto
from tests.reliability.certs import Pki, make_pki
from tests.reliability.helpers import (
    DedupSubscriber,
    keep_user,
    publisher,
    synthetic_alerts,
    validate,
    wait_until,
)

pytestmark = pytest.mark.integration
PASSWORD = "s3cret-Pa55"


def secure_broker(tmp_path: Path) -> tuple[Mosquitto, Pki]:
    pki = make_pki(tmp_path / "pki")
    passwd = tmp_path / "pki" / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "agent", PASSWORD], check=True)
    passwd.chmod(0o644)
    conf = (
        f"cafile {pki.ca}\ncertfile {pki.cert}\nkeyfile {pki.key}\n"
        f"allow_anonymous false\npassword_file {passwd}\n{keep_user()}"
    )
    return Mosquitto(tmp_path / "broker", extra_config=conf).start(), pki


def tls_subscriber(port: int, ca: Path) -> tuple[mqtt.Client, list[dict[str, Any]]]:
    got: list[dict[str, Any]] = []
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    c.username_pw_set("agent", PASSWORD)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("edge/#", qos=1)
    c.on_subscribe = lambda *a: loop.call_soon_threadsafe(ready.set)
    c.on_message = lambda cl, u, m: got.append(__import__("json").loads(m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c, got


async def run_task(pub: MqttPublisher) -> asyncio.Task[None]:
    return asyncio.create_task(pub.run())


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_connects_over_tls_with_password(tmp_path: Path, protocol: str) -> None:
    broker, pki = secure_broker(tmp_path)
    sub, got = tls_subscriber(broker.port, pki.ca)
    pub = publisher(
        broker.port, tmp_path / "state", protocol=protocol, tls=TlsConfig(ca_file=pki.ca),
        username="agent",
    )  # fmt: skip
    pub._password = PASSWORD
    task = await run_task(pub)
    try:
        await asyncio.wait_for(pub.connected.wait(), 15)
        body = synthetic_alerts(1, 1)[0]
        pub.submit_alert("pump-1", body)
        await wait_until(
            lambda: any(b.get("alert_id") == body["alert_id"] for b in got), 10, "alert"
        )
    finally:
        await stop_task(task)
        sub.loop_stop()
        sub.disconnect()
        broker.stop()
    for b in got:
        validate(b)


async def test_wrong_password_is_a_clear_error_with_backoff_and_no_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker, pki = secure_broker(tmp_path)
    pub = publisher(
        broker.port, tmp_path / "state", tls=TlsConfig(ca_file=pki.ca), username="agent"
    )
    pub._password = "wrong-password-123"
    caplog.set_level(logging.INFO)
    task = await run_task(pub)
    try:
        await wait_until(lambda: pub.stats.connect_failures >= 3, 15, "three refused attempts")
        assert not task.done()  # still trying, not crashed
        assert not pub.connected.is_set()
    finally:
        await stop_task(task)
        broker.stop()
    refused = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(refused) == 1  # clear, and once per episode rather than once per retry
    assert "username" in refused[0].getMessage()
    assert "wrong-password-123" not in caplog.text


async def test_mqtt5_acl_denial_dead_letters_the_message_and_the_queue_moves_on(
    tmp_path: Path,
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(
        "topic read edge/#\n"
        "topic write edge/rel-site/gw-rel/status\n"
        "topic write edge/rel-site/gw-rel/events\n"
        "topic write edge/rel-site/gw-rel/alerts/pump-1\n"
    )
    acl.chmod(0o644)
    broker = Mosquitto(tmp_path / "broker", extra_config=f"acl_file {acl}\n{keep_user()}").start()
    sub = DedupSubscriber(broker.port)
    pub = publisher(broker.port, tmp_path / "state", protocol="5")
    task = await run_task(pub)
    plan = synthetic_alerts(assets=2, per_asset=3)  # pump-1 allowed, pump-2 denied
    try:
        await asyncio.wait_for(pub.connected.wait(), 10)
        for body in plan:
            pub.submit_alert(str(body["asset"]), body)
        await asyncio.to_thread(
            sub.wait_until,
            lambda s: (
                sum(1 for t, b in s.received if b.get("type") == "publish_rejected") >= 3
                and len(s.unique_alerts()) >= 3
            ),
            15,
        )
        await wait_until(lambda: pub.outbox.stats.queued == 0, 10, "the outbox to empty")
    finally:
        await stop_task(task)
        sub.close()
        broker.stop()
    assert [b["asset"] for b in sub.unique_alerts()] == ["pump-1"] * 3
    assert pub.stats.rejected == 3
    dead = pub.outbox.dead_letters()
    assert len(dead) == 3 and all("0x87" in reason for _, _, reason in dead)
    for _, body in sub.received:
        validate(body)
