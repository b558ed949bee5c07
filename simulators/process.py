"""Run `edge-sim` servers as child processes and learn their port from the READY line."""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SimProcess:
    proc: subprocess.Popen[str]
    host: str
    port: int
    start: float  # wall-clock time of simulated t = 0
    speed: float

    def wall_time_of(self, sim_t: float) -> float:
        return self.start + sim_t / self.speed

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


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
) -> SimProcess:
    cmd = [
        sys.executable, "-m", "simulators.cli", "modbus",
        "--profile", str(profile), "--port", str(port), "--seed", str(seed),
        "--scenario", scenario, "--at", str(at), "--speed", str(speed),
    ]  # fmt: skip
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
            if line.startswith("READY modbus "):
                fields = line.split()
                host, port_s = fields[2].rsplit(":", 1)
                start = float(fields[3].split("=", 1)[1])
                return SimProcess(proc, host, int(port_s), start, speed)
    finally:
        sel.close()
    proc.kill()
    proc.wait(5)
    raise RuntimeError(f"simulator did not report READY within {timeout} s: {' '.join(cmd)}")
