"""A real Mosquitto broker started by the tests on a free port, with its own config file."""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port, wait_for_port
from tests.support.processes import end_process
from varta.mqtt import MqttSettings

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass
class Broker:
    """One ``mosquitto -c <conf>`` process; ``extra_conf`` lines are appended to the listener config."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_conf: str = "allow_anonymous true\n"
    # Tests that crash the broker want every second on disk. A deep queue makes each save expensive (the whole
    # store is rewritten), so benchmarks use the shipped config's 60 s.
    autosave_interval_s: int = 1
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "user root\n"  # as root, mosquitto would drop to 'mosquitto' and fail to save persistence here
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            f"autosave_interval {self.autosave_interval_s}\n"
            "set_tcp_nodelay true\n"
            "max_inflight_messages 20000\n"
            "max_queued_messages 200000\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"log_dest file {self.log_path}\n" + self.extra_conf
        )

    def start(self) -> Broker:
        """Start (or restart) the broker and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.write_conf()
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_port(self.port, timeout=10)
        except TimeoutError:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise RuntimeError(f"mosquitto did not start: {err}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (SIGTERM saves persistence; SIGKILL simulates a crash)."""
        end_process(self.proc, sig)
        self.proc = None

    def reload(self) -> None:
        """SIGHUP: re-read password and ACL files."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)

    def settings(self, **overrides: object) -> MqttSettings:
        """Client settings pointing at this broker."""
        data: dict[str, object] = {"host": "127.0.0.1", "port": self.port, "reconnect_max_s": 2.0}
        data.update(overrides)
        return MqttSettings.model_validate(data)
