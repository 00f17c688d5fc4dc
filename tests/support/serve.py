"""``earmark serve`` as a real process on a free loopback port, for the tests that need
the real server (uvicorn, its protocol, its memory): end to end, hostile clients."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port

READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 15.0
FLUSH_TIMEOUT_SECONDS = 15.0
# uvicorn shuts down gracefully on SIGTERM, then re-raises it, so the process ends by the
# signal (as process managers expect); the log tells whether the shutdown was clean.
STOPPED_CLEANLY = (0, -signal.SIGTERM)


class Serve:
    """``earmark serve`` on a free loopback port, in ``cwd``, with only the ``EARMARK_*``
    variables given (none inherited); output goes to a file. Always stopped."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("EARMARK_")}
        command = [sys.executable, "-m", "earmark", "serve", "--port", str(self.port), *args]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                command, env={**inherited, **env}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=1)
            except httpx.TransportError as error:
                last = repr(error)
            else:
                if response.status_code == 200:
                    return
                last = response.text
            time.sleep(0.05)
        raise AssertionError(f"serve did not become ready ({last}):\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        """SIGTERM (a graceful shutdown), SIGKILL if it hangs; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stopped_cleanly(self) -> bool:
        code = self.stop()
        out = self.output()
        clean = "Application shutdown complete" in out and "Traceback" not in out
        return code in STOPPED_CLEANLY and clean

    def rss_bytes(self) -> int:
        """The server process's resident set size now (/proc/<pid>/status, VmRSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")
