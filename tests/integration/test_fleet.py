"""A fleet on one real Mosquitto (issue 15 item 4): FLEET_AGENTS edge-agent processes, each with
its own config, bundle folder and state, all polling one simulated pump PLC; the operator is the
real `edge-agent fleet` command line.

1. A bundle signed by a key the gateways do not trust, deployed with a canary of 2: both canaries
   refuse it (the reason comes back), the rest never get it, the command exits 1; every gateway
   still runs the old model.
2. A good bundle with a canary of 2 while one gateway is stopped: the canaries load it, the rest
   follow; the stopped gateway is started again once the rollout command is out and converges
   from its persistent session; the command exits 0.
3. `fleet status` and every gateway's retained status, bundle folder and previous bundle: all on
   the new model, the old one kept for rollback; `fleet rollback` on one gateway takes it back.

20 agents (what the issue asks) cost about 100 MB and a second or two of CPU each to start; on
the 2-vCPU development VM the test takes about a minute. EDGE_AGENT_FLEET_AGENTS changes the
count (`edge-agent bench fleet` measures 20/50/100)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.inference.bundle import (
    Bundle,
    load_private_key,
    read_manifest,
    sign_bundle,
    write_key_pair,
    write_manifest,
)
from simulators.process import start_modbus_sim
from tests.conftest import PROFILE, SEED, SPEED, Subscriber, agent_config, sign, signing_keys

pytestmark = pytest.mark.integration

FLEET_AGENTS = int(os.environ.get("EDGE_AGENT_FLEET_AGENTS", "20"))


def variant(src: Path, dest: Path, version: str) -> Path:
    shutil.copytree(src, dest)
    m = read_manifest(dest)
    m["model_version"] = version
    write_manifest(dest, m)
    return sign(dest)


def gateway_config(root: Path, name: str, sim_port: int, broker_port: int, v1: Path) -> Path:
    d = root / name
    d.mkdir(parents=True)
    bundle = Path(shutil.copytree(v1, d / "bundles" / "pump-1"))
    path = agent_config(d / "agent.yaml", sim_port=sim_port, broker_port=broker_port, bundle=bundle)
    cfg = yaml.safe_load(path.read_text())
    cfg["identity"]["gateway"] = name
    # Slow polling keeps 20 agents light; max_age holds each reading across the sample grid.
    cfg["sources"][0]["poll_interval_s"] = 0.5
    cfg["assets"][0]["max_age_s"] = 1.5
    cfg["fleet"] = {"enabled": True, "chunk_timeout_s": 10}
    cfg["logging"]["level"] = "WARNING"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    log = (config.parent / "agent.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def fleet(*args: str, port: int, timeout: float = 120) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "fleet", *args, "--port", str(port),
         "--key", str(signing_keys()[0])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def table(out: str) -> dict[str, tuple[str, str]]:
    """gateway → (model, state) from the printed table."""
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows}


def is_status(m: Any) -> bool:
    return bool(m.body.get("schema") == "edge-agent/status/1")


def statuses(sub: Subscriber, names: set[str], want: Any, timeout: float) -> dict[str, Any]:
    """The latest status body per gateway, waiting until `want(body)` holds for all `names`."""
    latest: dict[str, Any] = {}
    for m in sub.all:
        if is_status(m):
            latest[str(m.body["gateway"])] = m.body

    def ok() -> bool:
        return all(n in latest and want(latest[n]) for n in names)

    deadline = time.monotonic() + timeout
    while not ok():
        m = sub.wait_for(is_status, deadline - time.monotonic())
        latest[str(m.body["gateway"])] = m.body
    return latest


@pytest.mark.timeout(300)
def test_fleet_rollout_with_canary_offline_gateway_and_refused_bundle(
    tmp_path: Path, trained_bundle: Bundle, mosquitto: Any
) -> None:
    v1 = Path(shutil.copytree(trained_bundle.directory, tmp_path / "v1"))
    old = Bundle.load(v1).manifest.model_version
    v2 = variant(v1, tmp_path / "v2", "pump-1-v2")
    rogue = variant(v1, tmp_path / "rogue", "pump-1-rogue")
    rogue_key, _ = write_key_pair(tmp_path / "keys", "rogue")
    sign_bundle(rogue, load_private_key(rogue_key))

    sim = start_modbus_sim(PROFILE, seed=SEED, speed=SPEED, log=tmp_path / "sim.log")
    # Status and events (not the binary chunks, nor the commands under .../cmd/...).
    sub = Subscriber(mosquitto.port, "edge/+/+/+")
    names = [f"gw-{i:02d}" for i in range(1, FLEET_AGENTS + 1)]
    offline = names[len(names) * 2 // 3]  # not a canary
    configs = {n: gateway_config(tmp_path, n, sim.port, mosquitto.port, v1) for n in names}
    agents: dict[str, subprocess.Popen[bytes]] = {}
    started = time.monotonic()
    try:
        agents = {n: start_agent(c) for n, c in configs.items()}
        statuses(sub, set(names), lambda b: b["state"] == "online", timeout=120)
        print(f"{FLEET_AGENTS} agents online in {time.monotonic() - started:.1f} s")

        # One gateway goes away (cleanly: its session stays on the broker, as after a reboot).
        agents[offline].terminate()
        assert agents[offline].wait(20) == 0
        statuses(sub, {offline}, lambda b: b["state"] == "offline", timeout=10)

        # 1. A bundle the gateways do not trust: the canaries refuse it, nobody else gets it.
        rc, out, err = finish(
            fleet("deploy", "--bundle", str(rogue), "--asset", "pump-1", "--gateways", "gw-*",
                  "--canary", "2", "--timeout", "60", port=mosquitto.port),
            timeout=90,
        )  # fmt: skip
        print(err, out)
        assert rc == 1, (out, err)
        rows = table(out)
        assert rows["test-site/gw-01"][1] == rows["test-site/gw-02"][1] == "failed", out
        assert "signed by unknown key" in out
        assert {rows[f"test-site/{n}"][1] for n in names[2:]} == {"not"}, out  # "not sent"
        # Every gateway that can answer still runs the old model (the stopped one cannot).
        rc, out, err = finish(
            fleet("status", "--gateways", "gw-*", "--timeout", "5", port=mosquitto.port), 60
        )
        print(err, out)
        rows = table(out)
        assert rc == 1 and rows.pop(f"test-site/{offline}")[1] == "no", out  # "no answer"
        assert set(rows.values()) == {(f"pump-1={old}", "done")}, out

        # 2. The good bundle, canary first; the stopped gateway comes back during the rollout.
        t0 = time.monotonic()
        deploy = fleet("deploy", "--bundle", str(v2), "--asset", "pump-1", "--gateways", "gw-*",
                       "--canary", "2", "--timeout", "90", port=mosquitto.port)  # fmt: skip
        # The rollout is under way once a gateway after the canaries has loaded the model.
        sub.wait_for(
            lambda m: (
                m.body.get("type") == "model_loaded"
                and m.body.get("gateway") in names[2:]
                and "command_id" in m.body.get("details", {})
            ),
            timeout=60,
        )
        agents[offline] = start_agent(configs[offline])
        rc, out, err = finish(deploy, timeout=120)
        converged = time.monotonic() - t0
        print(f"deploy to {FLEET_AGENTS} gateways (canary 2, one offline) took {converged:.1f} s")
        print(err, out)
        assert rc == 0, (out, err)
        assert {row for row in table(out).values()} == {("pump-1-v2", "done")}, out

        # 3. Every gateway's final state, from three places.
        final = statuses(
            sub, set(names), lambda b: b["models"] == {"pump-1": "pump-1-v2"}, timeout=30
        )
        assert all(final[n]["state"] == "online" for n in names)
        rc, out, err = finish(fleet("status", "--gateways", "gw-*", port=mosquitto.port), 60)
        assert rc == 0 and {r for r in table(out).values()} == {("pump-1=pump-1-v2", "done")}, out
        for n, cfg in configs.items():
            d = cfg.parent
            assert Bundle.load(d / "bundles" / "pump-1").manifest.model_version == "pump-1-v2", n
            prev = d / "state" / "fleet" / "previous" / "pump-1"
            assert Bundle.load(prev).manifest.model_version == old, n
        # The refused bundle left nothing behind anywhere.
        assert not list(tmp_path.glob("gw-*/state/fleet/staging/*"))
        assert not list(tmp_path.glob("gw-*/bundles/.*"))

        # Roll one gateway back.
        rc, out, err = finish(
            fleet("rollback", "--asset", "pump-1", "--gateways", "gw-03", port=mosquitto.port),
            60,
        )
        print(err, out)
        assert rc == 0 and table(out) == {"test-site/gw-03": (old, "done")}, (out, err)
        assert all(p.poll() is None for p in agents.values()), "an agent died"
    finally:
        for p in agents.values():
            if p.poll() is None:
                p.terminate()
        for p in agents.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        sim.stop()
        sub.close()
