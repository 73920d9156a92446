"""`wastex dataset register` against real MinIO and PostgreSQL: a decompression bomb among the files is refused with
its reason and the registration goes on with the other files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from infra.clients import db_sessions
from infra.db.dataset_versions import VersionStore
from infra.deployment import environment
from infra.settings import Settings
from tests.images import png_header_only

WASTEX = str(Path(sys.executable).with_name("wastex"))
MAX_PIXELS = 4_000_000


def _photo(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)


def test_registration_refuses_decompression_bombs_with_a_reason_and_registers_the_other_files(
        fresh_deployment: Settings, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    for index in range(3):
        _photo(seed / "glass" / f"g{index}.png", index)
        _photo(seed / "metal" / f"m{index}.png", 10 + index)
    bombs = {  # each a few hundred bytes whose header claims a huge picture
        seed / "glass" / "over-the-limit.png": png_header_only(3000, 3000),  # 9 MP: over the limit set below
        seed / "metal" / "pillow-bomb.png": png_header_only(12_000, 12_000),  # Pillow's warning range
        seed / "metal" / "huge.png": png_header_only(100_000, 100_000),  # Pillow's DecompressionBombError
    }
    for path, data in bombs.items():
        path.write_bytes(data)

    done = subprocess.run([WASTEX, "dataset", "register", str(seed), "--name", "v1"], capture_output=True, text=True,
                          env=environment(fresh_deployment, WASTEX_MAX_IMAGE_PIXELS=str(MAX_PIXELS), COLUMNS="400"),
                          timeout=120)

    assert done.returncode == 1, done.stdout + done.stderr  # refusals make the exit code 1 ...
    output = " ".join(done.stdout.split())  # wide enough that no path is wrapped
    for path in bombs:
        assert f"refused {path}: too many pixels" in output
    assert "6 images uploaded, 0 already stored" in output  # ... after the other files were registered
    version = VersionStore(db_sessions(fresh_deployment)).get("v1")
    assert version.stats["per_class"] == {"glass": 3, "metal": 3}
    assert version.manifest_uri is not None and version.announced_at is not None
