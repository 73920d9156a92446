"""MinIO object storage, built from source through the Go module proxy and cached."""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from infra.services.base import LaunchSpec, Service
from infra.services.process import run_logged

MINIO_MODULE = "github.com/minio/minio"
# The Go module proxy serves MinIO as a pseudo-version (its RELEASE.* tags are not semver).
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
BUILD_TIMEOUT_S = 30 * 60


class MinioService(Service):
    name = "minio"

    @property
    def host(self) -> str:
        return self.settings.minio_host

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.minio_port, self.settings.minio_console_port)

    @property
    def binary(self) -> Path:
        return self.settings.state_dir / "bin" / f"minio-{MINIO_VERSION}"

    @property
    def shared_binary(self) -> Path:
        """The build kept outside the state directory, so a fresh clone skips the build."""
        return self.settings.cache_dir / "minio" / MINIO_VERSION / "minio"

    def install(self) -> None:
        if self.binary.exists():
            return
        if not self.shared_binary.exists():
            self._build()
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(self.shared_binary, self.binary)
        except OSError:
            shutil.copy2(self.shared_binary, self.binary)

    def _build(self) -> None:
        go = shutil.which("go")
        if go is None:
            raise self.fail("Go toolchain missing: no `go` on PATH to build MinIO (install Go 1.24+)",
                            with_log=False)
        build_log = self.log_file.with_name("minio-build.log")
        print(f"minio: building {MINIO_MODULE}@{MINIO_VERSION} with go install (first time only, "
              f"a few minutes; log: {build_log})", flush=True)
        out_dir = self.shared_binary.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        code = run_logged([go, "install", f"{MINIO_MODULE}@{MINIO_VERSION}"], build_log,
                          env={"GOBIN": str(out_dir), "CGO_ENABLED": "0"}, timeout=BUILD_TIMEOUT_S)
        if code != 0 or not self.shared_binary.exists():
            raise self.install_failed(f"build failed: go install {MINIO_MODULE}@{MINIO_VERSION} exited {code}",
                                      build_log)

    def launch_spec(self) -> LaunchSpec:
        s = self.settings
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        return LaunchSpec(
            command=[str(self.binary), "server", str(data), "--address", f"{s.minio_host}:{s.minio_port}",
                     "--console-address", f"{s.minio_host}:{s.minio_console_port}", "--quiet"],
            env={"MINIO_ROOT_USER": s.s3_access_key, "MINIO_ROOT_PASSWORD": s.s3_secret_key,
                 "MINIO_UPDATE": "off"},
            cwd=self.home,
        )

    def is_healthy(self) -> bool:
        url = f"http://{self.address}/minio/health/live"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False
