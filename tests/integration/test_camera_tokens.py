"""`wastex ingest token create|list|revoke` on a real database: a token is shown once and stored only as its digest;
revoking by prefix or by camera ends exactly the tokens named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from infra.clients import db_sessions
from infra.db.models import CameraToken
from infra.deployment import environment
from infra.settings import Settings
from producers.camera_tokens import TOKEN_PREFIX, token_digest

WASTEX = str(Path(sys.executable).with_name("wastex"))


def _tokens(isolated: Settings, *args: str, exit_code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([WASTEX, "ingest", "token", *args], env={**environment(isolated), "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == exit_code, done.stdout + done.stderr
    return done


def _rows(isolated: Settings) -> list[CameraToken]:
    with db_sessions(isolated)() as session:
        return list(session.scalars(select(CameraToken).order_by(CameraToken.id)))


def test_a_token_is_printed_once_and_only_its_digest_is_kept(deployment: Settings) -> None:
    created = _tokens(deployment, "create", "--camera", "cam-print", "--site", "site-7", "--by", "tester")
    token = created.stdout.strip()
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40 and "\n" not in token
    assert "shown only now" in created.stderr

    (row,) = [row for row in _rows(deployment) if row.camera_id == "cam-print"]
    assert (row.token_sha256, row.prefix, row.site_id, row.created_by) == (token_digest(token), token[:12],
                                                                           "site-7", "tester")
    assert row.revoked_at is None and row.last_used_at is None
    listed = _tokens(deployment, "list").stdout
    assert row.prefix in listed and "cam-print" in listed and token not in listed


def test_revoking_by_prefix_or_by_camera_ends_only_those_tokens(deployment: Settings) -> None:
    first, second, other = (_tokens(deployment, "create", "--camera", camera, "--site", "s").stdout.strip()
                            for camera in ("cam-r", "cam-r", "cam-keep"))
    revoked = _tokens(deployment, "revoke", first[:12]).stdout
    assert f"revoked {first[:12]}" in revoked
    again = _tokens(deployment, "revoke", first[:12], exit_code=1)
    assert "no active token" in again.stderr

    assert f"revoked {second[:12]}" in _tokens(deployment, "revoke", "--camera", "cam-r").stdout
    state = {row.prefix: row.revoked_at is not None for row in _rows(deployment)}
    assert state[first[:12]] and state[second[:12]] and not state[other[:12]]
    assert "prefix" in _tokens(deployment, "revoke", exit_code=1).stderr


def test_a_token_for_a_malformed_camera_id_is_refused(deployment: Settings) -> None:
    refused = _tokens(deployment, "create", "--camera", "cam 1", "--site", "s", exit_code=1)
    assert "camera must be 1 to 64 characters" in refused.stderr
