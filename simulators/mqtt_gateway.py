"""A sensor gateway that publishes the simulated pump to an MQTT broker as an MQTT device profile
describes: `fields` topics as nested JSON documents, `items` topics as arrays of readings, and
`number` topics as plain numbers. Wildcards in a filter are filled with the asset name, and the
level named by a number topic's `{k}` template with the point name."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any

import aiomqtt

from edge_agent.sources.mqtt.profile import MqttProfile, MqttTopic
from simulators.machine import Machine
from simulators.scenarios import is_offline


def _set_path(doc: dict[str, Any], path: str, value: object) -> None:
    keys = path.split(".")
    node = doc
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def _topic(spec: MqttTopic, asset: str, point: str | None = None) -> str:
    levels = spec.filter.split("/")
    level_of_point = None
    if point is not None and spec.point and spec.point.startswith("{") and spec.point.endswith("}"):
        level_of_point = int(spec.point[1:-1])
    out = []
    for i, lv in enumerate(levels):
        if lv == "+":
            out.append(point if i == level_of_point and point is not None else asset)
        elif lv == "#":
            out.append(asset)
        else:
            out.append(lv)
    return "/".join(out)


def _json_value(v: float) -> float | None:
    return v if math.isfinite(v) else None  # JSON has no NaN: a dropout is null


def messages(
    profile: MqttProfile, values: dict[str, float], asset: str, now: float
) -> list[tuple[str, bytes]]:
    """Pure: the (topic, payload) pairs one publish cycle sends."""
    out: list[tuple[str, bytes]] = []
    iso = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for spec in profile.topics:
        if spec.parser == "number":
            for p in spec.points:
                out.append((_topic(spec, asset, p), f"{values.get(p, math.nan):.6g}".encode()))
            continue
        doc: dict[str, Any] = {}
        if spec.timestamp and spec.fields:
            _set_path(doc, spec.timestamp, iso)
        for f in spec.fields:
            _set_path(doc, f.path, _json_value(values.get(f.point, math.nan)))
        if spec.items is not None:
            items = []
            for p in spec.points:
                item: dict[str, Any] = {}
                _set_path(item, spec.name_path, p)
                _set_path(item, spec.value_path, _json_value(values.get(p, math.nan)))
                if spec.timestamp:
                    _set_path(item, spec.timestamp, round(now * 1000))
                items.append(item)
            _set_path(doc, spec.items, items)
        out.append((_topic(spec, asset), json.dumps(doc).encode()))
    return out


async def publish(
    profile: MqttProfile,
    sim: Machine,
    host: str,
    port: int,
    asset: str,
    period: float,
    speed: float,
    tick: float,
    duration: float | None = None,
) -> None:
    start = time.time()
    ready = False
    k = 0
    next_publish = start
    while duration is None or time.time() - start < duration:
        try:
            async with aiomqtt.Client(host, port, identifier=f"edge-sim-{asset}") as client:
                if not ready:
                    print(
                        f"READY mqtt {host}:{port} start={start:.6f} speed={speed} asset={asset}",
                        flush=True,
                    )
                    ready = True
                while duration is None or time.time() - start < duration:
                    k += 1
                    await asyncio.sleep(max(0.0, start + k * tick - time.time()))
                    target = (time.time() - start) * speed
                    if target > sim.state.t:
                        sim.step(target - sim.state.t)
                    now = time.time()
                    if now < next_publish:
                        continue
                    next_publish = max(next_publish + period, now - period)
                    if is_offline(sim.scenario, sim.state.t):
                        continue
                    for topic, payload in messages(profile, sim.measure(), asset, now):
                        await client.publish(topic, payload, qos=0)
        except aiomqtt.MqttError:
            # The broker went away: keep the physics' clock, try again shortly (like a gateway).
            await asyncio.sleep(0.5)
            k = max(k, int((time.time() - start) / tick))
    print("STOPPED", file=sys.stderr, flush=True)
