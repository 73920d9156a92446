"""The two sites of `wastex bench newsite`, built once from TrashNet and cached.

A quarter of TrashNet's photos (chosen by a hash of their digest, so every run picks the same) is set aside for
the second site and never seen by the first site's model; the rest is the first site, as it is (linked, not
copied). The second site's photos are those quarter re-shot by ``producers.site_look``; per class, the first
``labels`` in an order of their own (a hash of the digest, not the digest: the digest decides the split, and its
smallest values are all train) are labelled through the loop, the others are held out for scoring.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from producers.image_sources import folder_images
from producers.site_look import second_site_photo
from schemas.dataset_manifest import split_for_digest

SECOND_SITE_SHARE = 4  # one photo in this many goes to the second site


@dataclass(frozen=True)
class SitePhoto:
    path: Path
    class_name: str
    sha256: str


@dataclass(frozen=True)
class Sites:
    first_folder: Path  # one sub-folder per class: what `wastex dataset register` takes
    first_test: list[SitePhoto]  # the first site's test split (by digest), as the trainer splits it
    labelled: list[SitePhoto]  # second site, sent through the loop with their class
    held_out: list[SitePhoto]  # second site, only scored


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def goes_to_second_site(sha256: str) -> bool:
    return int(hashlib.sha256(f"newsite:{sha256}".encode()).hexdigest()[:8], 16) % SECOND_SITE_SHARE == 0


def _labelling_order(sha256: str) -> str:
    return hashlib.sha256(f"label-order:{sha256}".encode()).hexdigest()


def build_sites(trashnet: Path, cache: Path, labels_per_class: int, seed: int = 0) -> Sites:
    """Both sites under ``cache`` (made on first use, then reused), and the photos each role takes."""
    first_folder, second_folder = cache / "first-site", cache / f"second-site-{seed}"
    first_test, labelled, held_out = [], [], []
    for class_folder in sorted(path for path in trashnet.iterdir() if path.is_dir()):
        name = class_folder.name
        (first_folder / name).mkdir(parents=True, exist_ok=True)
        (second_folder / name).mkdir(parents=True, exist_ok=True)
        second = []
        for photo in folder_images(class_folder):
            data = photo.read_bytes()
            digest = _digest(data)
            if goes_to_second_site(digest):
                target = second_folder / name / f"{digest[:16]}.jpg"
                if not target.is_file():
                    partial = target.with_suffix(".partial")
                    partial.write_bytes(second_site_photo(data, seed))
                    partial.replace(target)
                second.append(SitePhoto(target, name, _digest(target.read_bytes())))
                continue
            link = first_folder / name / photo.name
            if not link.is_symlink():
                link.symlink_to(photo.resolve())
            if split_for_digest(digest) == "test":
                first_test.append(SitePhoto(link, name, digest))
        second.sort(key=lambda item: _labelling_order(item.sha256))
        if len(second) <= labels_per_class:
            raise ValueError(f"the second site has {len(second)} {name} photos, fewer than the "
                             f"{labels_per_class} labels per class asked for plus one held out")
        labelled += second[:labels_per_class]
        held_out += second[labels_per_class:]
    return Sites(first_folder, first_test, labelled, held_out)
