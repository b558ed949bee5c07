"""`edge-agent bench memory`: where an agent's resident memory goes, step by step.

A fresh Python process imports what `edge-agent run` imports, in the order that matters (the
standard library's asyncio and ssl, then each third-party package, then the agent's own modules),
creates the bundle's ONNX Runtime session, scores windows, and finally imports what only some
configurations load (cryptography for signed bundles, asyncua for an OPC UA source). After each
step it reads VmRSS, RssAnon and RssFile from /proc/self/status: the table is what each step adds.
A step's figure includes whatever it pulls in that no earlier step had loaded, so the order is
part of the method (each package is charged for what it alone brings).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import machine, print_table, train_pump_bundle, write_json

STEPS = [
    ("interpreter", "python 3.11 itself, site-packages on the path"),
    ("asyncio", "event loop; loads ssl (libssl, libcrypto) with it"),
    ("sqlite3", "outbox"),
    ("yaml", "config files, profiles"),
    ("numpy", "stream stages"),
    ("onnxruntime", "inference library"),
    ("pydantic", "config and manifest models (the package; its machinery loads with the models)"),
    ("aiomqtt", "MQTT upstream (paho)"),
    ("prometheus_client", "/metrics (only with observability.metrics.enabled, the default)"),
    ("pymodbus.client", "Modbus source (imported only when one is configured)"),
    ("edge_agent.agent", "the agent's own modules, their pydantic models, the rest of stdlib"),
    ("session", "ONNX Runtime session of the bundle's model (Detector)"),
    ("score", "100 windows scored"),
    ("cryptography", "only with bundles.trusted_keys (signed bundles, fleet commands)"),
    ("asyncua", "only with an OPC UA source"),
]

PROBE = r"""
import importlib, json, sys
def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    out["modules"] = len(sys.modules)
    return out
model, steps = sys.argv[1], sys.argv[2:]
rows = [("interpreter", status())]
for step in steps[1:]:
    if step == "session":
        from edge_agent.inference.detector import Detector
        det = Detector(__import__("pathlib").Path(model))
    elif step == "score":
        import numpy as np
        x = np.zeros((1, 32, 8), np.float32)
        shape = det.session.get_inputs()[0].shape
        if all(isinstance(d, int) for d in shape[1:]):
            x = np.zeros((1, *shape[1:]), np.float32)
        for _ in range(100):
            det.score(x)
    elif step == "cryptography":
        importlib.import_module("cryptography.hazmat.primitives.serialization")
        importlib.import_module("cryptography.hazmat.primitives.asymmetric.ed25519")
    elif step == "edge_agent.agent":
        importlib.import_module("edge_agent.agent")
        importlib.import_module("edge_agent.cli")
    else:
        importlib.import_module(step)
    rows.append((step, status()))
print(json.dumps(rows))
"""


def measure(model: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(model), *(s for s, _ in STEPS)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    rows: list[tuple[str, dict[str, float]]] = json.loads(out.stdout.strip().splitlines()[-1])
    what = dict(STEPS)
    result, prev = [], {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0, "modules": 0}
    for step, st in rows:
        result.append({
            "step": step, "what": what[step],
            "added_mb": round(st["VmRSS"] - prev["VmRSS"], 1),
            "added_anon_mb": round(st["RssAnon"] - prev["RssAnon"], 1),
            "added_file_mb": round(st["RssFile"] - prev["RssFile"], 1),
            "rss_mb": round(st["VmRSS"], 1), "modules_added": st["modules"] - prev["modules"],
        })  # fmt: skip
        prev = st
    return result


def main(out: Path, workdir: Path, bundle: Path | None) -> int:
    bundle = bundle or train_pump_bundle(workdir / "bundle-1", 1.0, speed=1.0, teacher_steps=0)
    rows = measure(bundle / "model.onnx")
    header = ["step", "+RSS MB", "+anon MB", "+file MB", "RSS MB", "modules", "what"]
    table = [
        [r["step"], f"{r['added_mb']:.1f}", f"{r['added_anon_mb']:.1f}",
         f"{r['added_file_mb']:.1f}", f"{r['rss_mb']:.1f}", str(r["modules_added"]), r["what"]]
        for r in rows
    ]  # fmt: skip
    print_table("resident memory, step by step (one fresh process)", header, table)
    write_json(out, {"machine": machine(), "bundle": str(bundle), "steps": rows})
    return 0
