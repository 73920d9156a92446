"""PostgreSQL from Debian's packages, with its own data directory and port."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from contextlib import closing
from pathlib import Path

from infra.services.base import LaunchSpec, Service
from infra.services.debian_packages import apt_install
from infra.services.process import run_logged

PACKAGE = "postgresql"
# PostgreSQL refuses to run as root; under root the server runs as the account the package creates.
SERVICE_ACCOUNT = "postgres"


def find_server_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin directory, else the one holding `postgres` on PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    on_path = shutil.which("postgres")
    return Path(on_path).resolve().parent if on_path else None


class PostgresService(Service):
    name = "postgres"
    # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions and exit cleanly.
    stop_signal = signal.SIGINT

    @property
    def host(self) -> str:
        return self.settings.postgres_host

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.postgres_port,)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def run_as(self) -> str | None:
        return SERVICE_ACCOUNT if os.geteuid() == 0 else None

    def _bindir(self) -> Path:
        bindir = find_server_bindir()
        if bindir is None:
            raise self.fail("PostgreSQL server missing and it could not be installed "
                            "(apt-get install postgresql)", with_log=False)
        return bindir

    def install(self) -> None:
        if find_server_bindir() is not None:
            return
        apt_install(self, PACKAGE)
        self._bindir()

    def _own(self, path: Path) -> None:
        if self.run_as is not None:
            account = pwd.getpwnam(self.run_as)
            os.chown(path, account.pw_uid, account.pw_gid)

    def _check_reachable(self) -> None:
        """The service account must be able to reach the state directory to open its data files."""
        if self.run_as is None:
            return
        probe = subprocess.run(["test", "-w", str(self.home)], user=self.run_as, check=False)
        if probe.returncode != 0:
            raise self.fail(
                f"the `{self.run_as}` account cannot write {self.home}: a parent directory is not "
                f"searchable by other users; choose a WASTEX_HOME outside it", with_log=False)

    def prepare(self) -> None:
        bindir = self._bindir()
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._own(self.home)
        self._check_reachable()
        if (self.data_dir / "PG_VERSION").exists():
            return
        password_file = self.home / ".initdb-password"
        password_file.write_text(self.settings.postgres_password + "\n")
        password_file.chmod(0o600)
        self._own(password_file)
        try:
            code = run_logged(
                [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", self.settings.postgres_user,
                 f"--pwfile={password_file}", "--auth-host=scram-sha-256", "--auth-local=peer",
                 "--encoding=UTF8", "--no-locale"],
                self.log_file, user=self.run_as, cwd=self.home,
            )
        finally:
            password_file.unlink(missing_ok=True)
        if code != 0:
            raise self.fail("initdb failed")

    def launch_spec(self) -> LaunchSpec:
        socket_dir = self.home / "socket"
        socket_dir.mkdir(exist_ok=True)
        self._own(socket_dir)
        return LaunchSpec(
            command=[str(self._bindir() / "postgres"), "-D", str(self.data_dir),
                     "-p", str(self.settings.postgres_port),
                     "-c", f"listen_addresses={self.settings.postgres_host}",
                     "-c", f"unix_socket_directories={socket_dir}",
                     "-c", "max_connections=200"],
            cwd=self.home,
            user=self.run_as,
        )

    def _connect(self, dbname: str):
        import psycopg2

        s = self.settings
        return psycopg2.connect(host=s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                                password=s.postgres_password, dbname=dbname, connect_timeout=2)

    def is_healthy(self) -> bool:
        try:
            with closing(self._connect("postgres")) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                return cursor.fetchone() == (1,)
        except Exception:
            return False

    def after_start(self) -> None:
        """Create the application database on first start."""
        with closing(self._connect("postgres")) as connection:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.settings.postgres_db,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{self.settings.postgres_db}"')
