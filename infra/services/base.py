"""What every local infrastructure service does: install, prepare, start, check health, stop."""

from __future__ import annotations

import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.services.process import ManagedProcess, group_rss_bytes, port_is_open, tail_of
from infra.settings import Settings


class ServiceError(RuntimeError):
    """A service could not be installed or started; the message names the cause and the log to read."""

    def __init__(self, service: str, cause: str, log_file: Path | None = None, log_tail: str = "") -> None:
        message = f"{service}: {cause}"
        if log_file is not None:
            message += f"\n  log: {log_file}"
        if log_tail:
            message += "\n  last lines:\n" + "\n".join(f"    {line}" for line in log_tail.splitlines())
        super().__init__(message)
        self.service = service
        self.cause = cause
        self.log_file = log_file


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    healthy: bool
    rss_bytes: int = 0

    @property
    def state(self) -> str:
        if self.pid is None:
            return "stopped"
        return "healthy" if self.healthy else "unhealthy"


@dataclass(frozen=True)
class LaunchSpec:
    command: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None


class Service(ABC):
    name: str
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.state_dir / self.name
        self.log_file = settings.state_dir / "logs" / f"{self.name}.log"
        self.process = ManagedProcess(self.name, settings.state_dir / "run" / f"{self.name}.pid", self.log_file)

    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def ports(self) -> tuple[int, ...]:
        """Every port the service listens on; the first is its main address."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.ports[0]}"

    @abstractmethod
    def install(self) -> None:
        """Make the server's binaries available (idempotent, cached)."""

    def prepare(self) -> None:  # noqa: B027 - optional hook: one-time initialisation of the data directory
        """One-time initialisation of the data directory."""

    @abstractmethod
    def launch_spec(self) -> LaunchSpec: ...

    @abstractmethod
    def is_healthy(self) -> bool: ...

    def after_start(self) -> None:  # noqa: B027 - optional hook
        """Work that needs the running server (creating a database, for example)."""

    def fail(self, cause: str, with_log: bool = True) -> ServiceError:
        return ServiceError(self.name, cause, self.log_file, self.process.log_tail() if with_log else "")

    def install_failed(self, cause: str, build_log: Path) -> ServiceError:
        return ServiceError(self.name, cause, build_log, tail_of(build_log))

    def up(self) -> str:
        """Start the service unless it already runs; wait until it is healthy. Returns what was done."""
        if self.process.pid() is not None:
            self._wait_healthy()
            return "already running"
        for port in self.ports:
            if port_is_open(self.host, port):
                raise self.fail(
                    f"port {port} on {self.host} is taken by another process; stop it or choose another "
                    f"port (see the WASTEX_*_PORT settings)", with_log=False)
        self.install()
        self.prepare()
        spec = self.launch_spec()
        self.process.spawn(spec.command, env=spec.env, cwd=spec.cwd, user=spec.user)
        self._wait_healthy()
        self.after_start()
        return "started"

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.pid() is None:
                raise self.fail("the server process exited during start-up")
            if self.is_healthy():
                return
            time.sleep(0.5)
        raise self.fail(f"not healthy after {self.settings.start_timeout_s} s (WASTEX_START_TIMEOUT)")

    def down(self) -> bool:
        return self.process.stop(self.stop_signal)

    def status(self) -> ServiceStatus:
        pid = self.process.pid()
        if pid is None:
            return ServiceStatus(self.name, self.address, None, False)
        return ServiceStatus(self.name, self.address, pid, self.is_healthy(), group_rss_bytes(pid))
