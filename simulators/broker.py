"""Start a private Mosquitto broker on a free loopback port (tests and the demo)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


@dataclass
class Mosquitto:
    workdir: Path
    port: int = 0
    extra_config: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Mosquitto:
        exe = find_mosquitto()
        if exe is None:
            raise RuntimeError("mosquitto not found: install it (apt-get install mosquitto)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):  # a free port can be taken between picking and binding
            self.port = self.port or free_port()
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                f"log_dest stderr\n{self.extra_config}"
            )
            log = (self.workdir / "mosquitto.log").open("ab")
            self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log)
            if self._wait_listening(timeout):
                return self
            self.stop()
            self.port = 0
        raise RuntimeError(f"mosquitto did not start; see {self.workdir / 'mosquitto.log'}")

    def _wait_listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
