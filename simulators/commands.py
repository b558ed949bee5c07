"""`edge-agent demo`: added to `edge-agent` as a plugin of the tools distribution.

The demo runs simulators, so it lives with them and not in the gateway's package; `edge_agent.cli`
finds this module through the `edge_agent.commands` entry point (tools/pyproject.toml). The demo
itself is imported only when it runs: this module is loaded on every `edge-agent` call.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_demo(args: argparse.Namespace) -> int:
    from simulators.demo import run_demo

    return run_demo(
        Path(args.workdir), scenario=args.scenario, timeout=args.timeout, forecast=args.forecast
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="simulator + training + agent + broker on this machine (tools)")
    p.add_argument("--workdir", default="demo-run")
    p.add_argument("--scenario", default="cavitation", choices=["cavitation", "bearing_wear"])
    p.add_argument("--timeout", type=float, default=150.0)
    p.add_argument(
        "--forecast",
        action="store_true",
        help="bearing wear over hours at 200x: the predicted alert, then the PLC's limit alarm",
    )
    p.set_defaults(func=cmd_demo)
