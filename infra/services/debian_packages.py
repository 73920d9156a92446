"""Servers that come from Debian's packages: installed with apt-get on first start, like a site's admin would."""

from __future__ import annotations

import os
import shutil

from infra.services.base import Service
from infra.services.process import run_logged


def apt_install(service: Service, package: str) -> None:
    """Install `package` (no recommends) or raise the service's error naming the log to read."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise service.fail(f"{service.name} missing: install the Debian package `{package}` (needs root and "
                           "apt-get)", with_log=False)
    install_log = service.log_file.with_name(f"{service.name}-install.log")
    print(f"{service.name}: installing the Debian package {package} (log: {install_log})", flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if run_logged([apt, "-y", "-q", "update"], install_log, env=env) != 0 or run_logged(
            [apt, "-y", "-q", "install", "--no-install-recommends", package], install_log, env=env) != 0:
        raise service.install_failed(f"apt-get install {package} failed", install_log)
