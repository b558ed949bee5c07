"""Run `edge-sim` servers as child processes and learn their address from the READY line.

Every server prints one line `READY <kind> <address> start=<epoch> speed=<x> [key=value ...]`:
the address is `host:port` (Modbus TCP, MQTT broker), a serial device path (Modbus RTU) or an
`opc.tcp://` endpoint (OPC UA).
"""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SimProcess:
    proc: subprocess.Popen[str]
    host: str
    port: int
    start: float  # wall-clock time of simulated t = 0
    speed: float
    address: str = ""  # as printed: host:port, serial device or endpoint
    extra: dict[str, str] = field(default_factory=dict)

    def wall_time_of(self, sim_t: float) -> float:
        return self.start + sim_t / self.speed

    def requests_served(self, timeout: float = 5.0) -> int:
        """Modbus requests the server has answered so far (`edge-sim modbus` only): it prints
        `REQUESTS <n>` on SIGUSR1."""
        assert self.proc.stdout is not None
        self.proc.send_signal(signal.SIGUSR1)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0 and sel.select(left):
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith("REQUESTS "):
                    return int(line.split()[1])
        finally:
            sel.close()
        raise RuntimeError(f"simulator at {self.address} did not report its request count")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def parse_ready(line: str, kind: str, speed: float) -> tuple[str, int, str, float, dict[str, str]]:
    """`READY kind address key=value...` → (host, port, address, start, extras)."""
    fields = line.split()
    address = fields[2]
    extras = dict(f.split("=", 1) for f in fields[3:] if "=" in f)
    host, port = "", 0
    hostport = address.split("://", 1)[-1]
    if ":" in hostport and not address.startswith("/"):
        host, port_s = hostport.rsplit(":", 1)
        port = int(port_s.split("/", 1)[0])
    return host, port, address, float(extras.pop("start")), extras


def start_sim(
    kind: str,
    args: list[str],
    *,
    speed: float = 1.0,
    timeout: float = 30.0,
    log: Path | None = None,
) -> SimProcess:
    """Start `edge-sim <kind> <args>` and wait (bounded) for its READY line."""
    cmd = [sys.executable, "-m", "simulators.cli", kind, *args, "--speed", str(speed)]
    stderr = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                break
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(f"READY {kind} "):
                host, port, address, start, extra = parse_ready(line, kind, speed)
                return SimProcess(proc, host, port, start, speed, address, extra)
    finally:
        sel.close()
    proc.kill()
    proc.wait(5)
    raise RuntimeError(f"simulator did not report READY within {timeout} s: {' '.join(cmd)}")


def _scenario_args(profile: Path, seed: int, scenario: str, at: float) -> list[str]:
    return ["--profile", str(profile), "--seed", str(seed), "--scenario", scenario, "--at", str(at)]


def start_modbus_sim(
    profile: Path,
    *,
    seed: int = 0,
    scenario: str = "none",
    at: float = 600.0,
    speed: float = 1.0,
    port: int = 0,
    timeout: float = 20.0,
    log: Path | None = None,
    start_at: float = 0.0,
) -> SimProcess:
    """`start_at`: simulated seconds the unit runs before it serves (`at` counts from 0)."""
    args = [*_scenario_args(profile, seed, scenario, at), "--port", str(port)]
    if start_at:
        args += ["--start", str(start_at)]
    return start_sim("modbus", args, speed=speed, timeout=timeout, log=log)


def start_modbus_rtu_sim(
    profile: Path,
    *,
    units: tuple[int, ...] = (1,),
    seed: int = 0,
    scenario: str = "none",
    at: float = 600.0,
    speed: float = 1.0,
    timeout: float = 20.0,
    log: Path | None = None,
) -> SimProcess:
    """The READY address is the client's end of a fresh pty pair."""
    args = [*_scenario_args(profile, seed, scenario, at), "--units", ",".join(map(str, units))]
    return start_sim("modbus-rtu", args, speed=speed, timeout=timeout, log=log)
