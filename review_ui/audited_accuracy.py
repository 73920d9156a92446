"""Audited accuracy per site and camera: how right the counts are, measured from operators' audit answers.

An audit item (ReviewItem.kind "audit") is answered once it is labelled or discarded. It is correct when its label
is the predicted class; a discard is wrong (the model counted something that is not waste). Per site, camera, day
of capture (UTC) and model version:
- audited, correct, accuracy = correct / audited with its 95% Wilson interval (scipy's binomtest);
- scored = classified + ood and ood_rate = ood / scored, from table scoring_tallies;
- the share of silent miscounts = (1 - ood_rate) * (1 - accuracy): of all images scored, the estimated share counted
  as a wrong class without anyone seeing them (the audits sample exactly the images that were counted).
A figure without its inputs (no answer yet, nothing scored) is None, never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from scipy.stats import binomtest
from sqlalchemy import Date, cast, func, select
from sqlalchemy.orm import Session

from infra.db.models import CameraDrift, ModelVersion, ReviewItem, ScoringTally

CONFIDENCE = 0.95
ANSWERED = ("labelled", "discarded")


def wilson_interval(correct: int, audited: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of correct / audited; None before the first answer."""
    if audited == 0:
        return None
    interval = binomtest(correct, audited).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def silent_miscount_rate(ood_rate: float | None, accuracy: float | None) -> float | None:
    """The share of scored images counted as a wrong class unseen: in distribution, and wrong."""
    if ood_rate is None or accuracy is None:
        return None
    return (1.0 - ood_rate) * (1.0 - accuracy)


@dataclass(frozen=True)
class GroupKey:
    site_id: str
    camera_id: str
    day: date
    model_version: str


@dataclass
class Figures:
    """The audit answers and the scoring tallies of one group (a site, a camera, a day, ... or a sum of them)."""

    audited: int = 0
    correct: int = 0
    classified: int = 0
    ood: int = 0

    def add(self, other: Figures) -> Figures:
        self.audited += other.audited
        self.correct += other.correct
        self.classified += other.classified
        self.ood += other.ood
        return self

    @property
    def scored(self) -> int:
        return self.classified + self.ood

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.audited if self.audited else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.correct, self.audited)

    @property
    def ood_rate(self) -> float | None:
        return self.ood / self.scored if self.scored else None

    @property
    def silent_miscount_rate(self) -> float | None:
        return silent_miscount_rate(self.ood_rate, self.accuracy)

    def as_dict(self) -> dict[str, Any]:
        """The figures as the API, the page and AuditedAccuracyUpdated carry them."""
        interval = self.interval
        return {"audited": self.audited, "correct": self.correct, "accuracy": self.accuracy,
                "interval": list(interval) if interval else None, "scored": self.scored, "ood": self.ood,
                "ood_rate": self.ood_rate, "silent_miscount_rate": self.silent_miscount_rate}


@dataclass(frozen=True)
class AccuracyFilter:
    """Which days (of capture, inclusive, UTC) and which model version the figures cover; None: all."""

    since: date | None = None
    until: date | None = None
    model_version: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> AccuracyFilter:
        since, until = _day("since", args.get("since")), _day("until", args.get("until"))
        if since and until and since > until:
            raise ValueError("since must not be after until")
        return cls(since, until, args.get("model") or None)

    def to_args(self) -> dict[str, str]:
        return {name: value for name, value in (("since", self.since and self.since.isoformat()),
                                                ("until", self.until and self.until.isoformat()),
                                                ("model", self.model_version)) if value}


def _day(name: str, raw: str | None) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(f"{name} must be a day like 2026-01-31, got {raw[:40]!r}") from None


def _captured_day() -> Any:
    return cast(func.timezone("UTC", ReviewItem.captured_at), Date)


def figures_by_group(session: Session, selection: AccuracyFilter) -> dict[GroupKey, Figures]:
    """Audit answers and tallies per (site, camera, day, model version)."""
    day = _captured_day()
    correct = func.count().filter(ReviewItem.label == ReviewItem.predicted_class)
    audits = (select(ReviewItem.site_id, ReviewItem.camera_id, day, ReviewItem.model_version, func.count(), correct)
              .where(ReviewItem.kind == "audit", ReviewItem.status.in_(ANSWERED))
              .group_by(ReviewItem.site_id, ReviewItem.camera_id, day, ReviewItem.model_version))
    tallies = select(ScoringTally.site_id, ScoringTally.camera_id, ScoringTally.day, ScoringTally.model_version,
                     ScoringTally.classified, ScoringTally.ood)
    if selection.since:
        audits, tallies = audits.where(day >= selection.since), tallies.where(ScoringTally.day >= selection.since)
    if selection.until:
        audits, tallies = audits.where(day <= selection.until), tallies.where(ScoringTally.day <= selection.until)
    if selection.model_version:
        audits = audits.where(ReviewItem.model_version == selection.model_version)
        tallies = tallies.where(ScoringTally.model_version == selection.model_version)
    groups: dict[GroupKey, Figures] = {}
    for site, camera, on, model, audited, right in session.execute(audits):
        groups.setdefault(GroupKey(site, camera, on, model), Figures()).add(Figures(audited, right))
    for site, camera, on, model, classified, ood in session.execute(tallies):
        groups.setdefault(GroupKey(site, camera, on, model), Figures()).add(Figures(0, 0, classified, ood))
    return groups


def rolled_up(groups: Mapping[GroupKey, Figures], key: Callable[[GroupKey], tuple[Any, ...]]
              ) -> dict[tuple[Any, ...], Figures]:
    """The groups summed by `key` (say per camera and model version, over the days), in key order."""
    sums: dict[tuple[Any, ...], Figures] = {}
    for group, figures in groups.items():
        sums.setdefault(key(group), Figures()).add(figures)
    return dict(sorted(sums.items(), key=lambda item: tuple("" if v is None else str(v) for v in item[0])))


def per_site(groups: Mapping[GroupKey, Figures]) -> dict[tuple[Any, ...], Figures]:
    return rolled_up(groups, lambda g: (g.site_id, g.model_version))


def per_camera(groups: Mapping[GroupKey, Figures]) -> dict[tuple[Any, ...], Figures]:
    return rolled_up(groups, lambda g: (g.site_id, g.camera_id, g.model_version))


def per_day(groups: Mapping[GroupKey, Figures]) -> dict[tuple[Any, ...], Figures]:
    return rolled_up(groups, lambda g: (g.day, g.site_id, g.camera_id, g.model_version))


@dataclass
class SiteReport:
    """One site's figures per model version and its cameras' (with their drift marks), for the page and the API."""

    site_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # per model version
    cameras: list[dict[str, Any]] = field(default_factory=list)  # per camera and model version


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None


def drift_marks(session: Session) -> dict[str, dict[str, Any]]:
    """Each camera's latest drift check (table camera_drift, kept by the scoring monitor); times in ISO 8601, UTC."""
    return {row.camera_id: {"drifting": row.drifting, "since": _iso(row.drifting_since), "ood_rate": row.ood_rate,
                            "energy_ks": row.energy_ks, "median_energy_shift": row.median_energy_shift,
                            "images": row.images, "checked_at": _iso(row.checked_at),
                            "model_version": row.model_version}
            for row in session.scalars(select(CameraDrift))}


def site_reports(groups: Mapping[GroupKey, Figures], marks: Mapping[str, dict[str, Any]]) -> list[SiteReport]:
    """Per site: its figures per model version, then each camera's with the camera's drift mark."""
    reports: dict[str, SiteReport] = {}
    for (site, model), figures in per_site(groups).items():
        reports.setdefault(site, SiteReport(site)).rows.append({"model_version": model, **figures.as_dict()})
    for (site, camera, model), figures in per_camera(groups).items():
        reports[site].cameras.append({"camera_id": camera, "model_version": model, **figures.as_dict(),
                                      "drift": marks.get(camera)})
    return list(reports.values())


def day_rows(groups: Mapping[GroupKey, Figures]) -> list[dict[str, Any]]:
    """Per day, site, camera and model version, newest day first."""
    rows = [{"day": on.isoformat(), "site_id": site, "camera_id": camera, "model_version": model,
             **figures.as_dict()} for (on, site, camera, model), figures in per_day(groups).items()]
    return sorted(rows, key=lambda row: row["day"], reverse=True)


def serving_model(session: Session) -> str | None:
    return session.scalar(select(ModelVersion.version).where(ModelVersion.status == "production"))


def model_versions(session: Session) -> list[str]:
    """The model versions that have audit answers or tallies, newest first, for the filter."""
    seen = set(session.scalars(select(ScoringTally.model_version).distinct()))
    seen |= set(session.scalars(select(ReviewItem.model_version).where(ReviewItem.kind == "audit").distinct()))
    return sorted(seen, reverse=True)


def current_figures(session: Session, model_version: str) -> dict[str, dict[str, Figures]]:
    """All days' figures of one model version per site and per camera: what the counts of that model are worth."""
    groups = figures_by_group(session, AccuracyFilter(model_version=model_version))
    return {"site": {site: figures for (site, _), figures in per_site(groups).items()},
            "camera": {camera: figures for (camera, _), figures in
                       rolled_up(groups, lambda g: (g.camera_id, g.model_version)).items()}}


def counts_accuracy(session: Session) -> dict[str, Any]:
    """The serving model's audited accuracy per camera and per site, as /api/counts returns it."""
    model = serving_model(session)
    if model is None:
        return {"model_version": None, "camera": {}, "site": {}}
    current = current_figures(session, model)
    return {"model_version": model, **{scope: {key: figures.as_dict() for key, figures in by_key.items()}
                                       for scope, by_key in current.items()}}
