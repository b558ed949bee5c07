"""`edge-agent fleet deploy | rollback | status | config`: the operator's commands (docs/FLEET.md).
Exit codes: 0 every gateway answered success, 1 any failed or did not answer by the deadline,
2 bad arguments (key, bundle, config file) or no gateway matching."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


def cmd_fleet(args: argparse.Namespace) -> int:
    from edge_agent.fleet.operator import BrokerOptions, Operator, fleet_command
    from edge_agent.inference.bundle import BundleError, load_private_key, manifest_path

    try:
        key = load_private_key(Path(args.key))
    except BundleError as exc:
        print(f"edge-agent fleet: --key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    broker = BrokerOptions(
        host=args.host,
        port=args.port,
        prefix=args.prefix,
        username=args.username,
        password=os.environ.get(args.password_env),
        ca_file=Path(args.ca_file) if args.ca_file else None,
    )
    fargs: dict[str, Any] = {}
    bundle = None
    if args.fleet_cmd in ("deploy", "rollback"):
        fargs["asset"] = args.asset
    if args.fleet_cmd == "deploy":
        bundle = Path(args.bundle)
        try:
            manifest_path(bundle)
        except BundleError as exc:
            print(f"edge-agent fleet: --bundle: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not (bundle / "signature.json").is_file():
            print(
                f"edge-agent fleet: --bundle: {bundle} is not signed (edge-agent sign); "
                "gateways would refuse it",
                file=sys.stderr,
            )
            return EXIT_USAGE
    if args.fleet_cmd == "config":
        try:
            fargs["yaml"] = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"edge-agent fleet: --file: {exc}", file=sys.stderr)
            return EXIT_USAGE
    op = Operator(broker, key)
    try:
        return asyncio.run(
            fleet_command(
                op,
                args.fleet_cmd,
                args.site,
                args.gateways,
                args.timeout,
                args.lifetime,
                fargs,
                bundle,
                getattr(args, "canary", 0),
                args.chunk_bytes,
            )
        )
    except OSError as exc:
        print(f"edge-agent fleet: broker {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # aiomqtt.MqttError and kin: say it, no traceback
        print(f"edge-agent fleet: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fleet", help="deploy bundles and configs to gateways over MQTT")
    fleet = p.add_subparsers(dest="fleet_cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gateways", default="*", help="gateway name pattern (glob; default *)")
    common.add_argument("--site", default="*", help="site name pattern (glob; default *)")
    common.add_argument("--key", required=True, help="ed25519 private key (PEM) gateways trust")
    common.add_argument("--host", default="127.0.0.1", help="MQTT broker")
    common.add_argument("--port", type=int, default=1883)
    common.add_argument("--prefix", default="edge", help="topic prefix (upstream.mqtt)")
    common.add_argument("--username")
    common.add_argument(
        "--password-env", default="EDGE_AGENT_MQTT_PASSWORD", help="variable holding the password"
    )
    common.add_argument("--ca-file", help="CA bundle of the broker's TLS certificate")
    common.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for all answers"
    )
    common.add_argument(
        "--lifetime",
        type=float,
        default=86_400.0,
        help="seconds the command stays valid (a gateway offline longer misses it; default 1 d)",
    )
    common.add_argument("--chunk-bytes", type=int, default=64 * 1024, help=argparse.SUPPRESS)
    d = fleet.add_parser("deploy", parents=[common], help="send a bundle, canary first")
    d.add_argument("--bundle", required=True, help="signed bundle folder")
    d.add_argument("--asset", required=True, help="the asset whose bundle it replaces")
    d.add_argument("--canary", type=int, default=0, help="gateways to try first (default 0)")
    r = fleet.add_parser("rollback", parents=[common], help="back to the previous bundle")
    r.add_argument("--asset", required=True)
    fleet.add_parser("status", parents=[common], help="model versions of the gateways")
    c = fleet.add_parser("config", parents=[common], help="push a config file (validated whole)")
    c.add_argument("--file", required=True, help="the agent config (YAML) to push")
    for q in (d, r, c):
        q.set_defaults(func=cmd_fleet)
    fleet.choices["status"].set_defaults(func=cmd_fleet)
