"""Example consumer of edge-agent alerts (paho-mqtt >= 2).

Joins an MQTT 5 shared subscription, so several copies of this consumer split the alerts of a
whole fleet between them, and de-duplicates on (alert_id, event), plus ts for `updated`:
delivery is at least once, so the same event can arrive twice after a reconnect.

    python docs/examples/subscriber.py --host broker.plant.local --group maintenance-app

Prints one JSON line per new alert event. `--count N` exits after N unique events (used by tests).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

import paho.mqtt.client as mqtt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--prefix", default="edge")
    ap.add_argument("--group", default="alerting", help="shared subscription group")
    ap.add_argument("--count", type=int, default=0, help="exit after this many unique events")
    ap.add_argument("--quiet", action="store_true", help="print only the final summary")
    args = ap.parse_args()

    # $share/<group>/<filter>: the broker gives each message to one member of the group.
    topic = f"$share/{args.group}/{args.prefix}/+/+/alerts/#"
    # A real consumer keeps this in a store with a time-to-live (a few days covers any outage
    # the gateways' outboxes can bridge); a set is enough for an example.
    seen: set[tuple[str, str, str]] = set()
    duplicates = 0

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(topic, qos=1)

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        print(json.dumps({"subscribed": topic}), flush=True)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal duplicates
        body = json.loads(msg.payload)
        # `updated` may legitimately repeat within one alert; its data time tells them apart.
        key = (body["alert_id"], body["event"], body["ts"] if body["event"] == "updated" else "")
        if key in seen:
            duplicates += 1
            return
        seen.add(key)
        if not args.quiet:
            fields = ("asset", "alert_id", "event", "severity", "ts", "message")
            print(json.dumps({k: body[k] for k in fields}), flush=True)
        if args.count and len(seen) >= args.count:
            client.disconnect()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    with contextlib.suppress(KeyboardInterrupt):
        client.loop_forever(retry_first_connection=True)
    print(json.dumps({"unique": len(seen), "duplicates": duplicates}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
