"""A worker with a state directory of its own (an artefact cache no other process touches) on a deployment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from infra.settings import Settings


def private_home(isolated: Settings, home: Path) -> tuple[Settings, dict[str, str]]:
    """The deployment's settings with `home` as state directory, and the credentials a `wastex` sub-process
    there needs (a new home would otherwise generate credentials of its own that the services do not know)."""
    home.mkdir(parents=True, exist_ok=True)
    credentials = {"WASTEX_S3_ACCESS_KEY": isolated.s3_access_key, "WASTEX_S3_SECRET_KEY": isolated.s3_secret_key,
                   "WASTEX_POSTGRES_PASSWORD": isolated.postgres_password}
    return dataclasses.replace(isolated, state_dir=home), credentials
