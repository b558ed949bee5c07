"""`edge-agent status`: a plain HTTP GET of the running agent's /healthz and /readyz."""

from __future__ import annotations

import http.client
import json


def _get(host: str, port: int, path: str, timeout: float) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
        return resp.status, body if isinstance(body, dict) else {}
    finally:
        conn.close()


def print_status(host: str, port: int, timeout: float = 5.0) -> int:
    """Print a summary; 0 when healthy and ready, 1 otherwise (also when it does not answer)."""
    try:
        h_code, health = _get(host, port, "/healthz", timeout)
        r_code, ready = _get(host, port, "/readyz", timeout)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        print(f"edge-agent status: no answer from http://{host}:{port}: {exc}")
        return 1
    print(f"health: {health.get('status', '?')} (pipeline queue {health.get('pipeline_queue')})")
    print(f"ready:  {ready.get('status', '?')}")
    print(f"broker: {'connected' if ready.get('broker_connected') else 'disconnected'}")
    sources = ready.get("sources_connected")
    if isinstance(sources, dict):
        for name, up in sources.items():
            print(f"source {name}: {'connected' if up else 'not connected'}")
    models = ready.get("models")
    if isinstance(models, dict):
        for asset, version in models.items():
            print(f"model {asset}: {version}")
    unsigned = ready.get("unsigned_models")
    if isinstance(unsigned, list) and unsigned:
        print(f"INSECURE: unsigned bundles (bundles.allow_unsigned) for {', '.join(unsigned)}")
    print(f"outbox: {ready.get('outbox_messages')} message(s)")
    return 0 if h_code == 200 and r_code == 200 else 1
