"""SQLAlchemy models of the one PostgreSQL schema. Changes go through an Alembic migration."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class WasteClass(Base):
    """The class registry: every class a model may predict or an operator may assign."""

    __tablename__ = "waste_classes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(String(64), default="system")

    __table_args__ = (Index("uq_waste_classes_name_ci", func.lower(name), unique=True),)


class ModelVersion(Base):
    """The model registry: one row per model artefact, with the thresholds that travel with it."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    artefact_uri: Mapped[str] = mapped_column(String(512))
    classes: Mapped[list[str]] = mapped_column(JSON)
    tau_energy: Mapped[float] = mapped_column(Float)
    tau_softmax: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    has_serving_export: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # sha256 over the serving files (schemas.model_artefact.artefact_digest): what a worker must load, byte for byte.
    artefact_digest: Mapped[str | None] = mapped_column(String(64))
    # Percentiles 0..100 of the val split's energies under this model: the in-distribution reference of drift checks.
    energy_quantiles: Mapped[list[float] | None] = mapped_column(JSON)
    review_rate: Mapped[float | None] = mapped_column(Float)  # share of in-distribution images the thresholds flag
    # The runtime the workers serve it on (infra.runtime_names), chosen by measurement when it was registered;
    # None: the workers' default chain. `runtime_check` holds the measurement (infra.runtime_choice.RuntimeChoice).
    serving_runtime: Mapped[str | None] = mapped_column(String(32))
    runtime_check: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="candidate")  # candidate | production | retired
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # At most one model serves: the database refuses a second production row.
    __table_args__ = (Index("uq_model_versions_one_production", status, unique=True,
                            postgresql_where=status == "production"),)


class Operator(Base):
    """A review UI account; the password is stored only as a salted hash."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    role: Mapped[str] = mapped_column(String(16), default="labeller", server_default="labeller")  # labeller | admin
    # Every session carries the epoch it was opened in; raising it (logout everywhere, new password,
    # deactivation) ends every open session of the operator at its next request.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("uq_operators_username_ci", func.lower(username), unique=True),
                      CheckConstraint("role IN ('labeller', 'admin')", name="ck_operators_role"))


class ReviewItem(Base):
    """The review queue: one row per ImageFlaggedOOD event, or per ImageClassified event sampled for audit
    (its event id makes the projection idempotent)."""

    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_event_id: Mapped[str] = mapped_column(String(36), unique=True)
    bucket: Mapped[str] = mapped_column(String(63))
    object_key: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    site_id: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    flagged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model_version: Mapped[str] = mapped_column(String(64))
    predicted_class: Mapped[str] = mapped_column(String(64), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    energy: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(16))
    classes: Mapped[list[str]] = mapped_column(JSON)
    probabilities: Mapped[list[float]] = mapped_column(JSON)
    thresholds: Mapped[dict[str, float]] = mapped_column(JSON)
    # pending | labelled | discarded
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    label: Mapped[str | None] = mapped_column(String(64))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    projected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    kind: Mapped[str] = mapped_column(String(8), default="ood", server_default="ood")  # ood | audit
    embedding: Mapped[list[float] | None] = mapped_column(JSON)  # the model's penultimate features, when sent

    # The two queue orders (most uncertain first, newest first) within a status.
    __table_args__ = (
        Index("ix_review_items_status_energy", status, energy.desc(), id.desc()),
        Index("ix_review_items_status_captured", status, captured_at.desc(), id.desc()),
        Index("ix_review_items_kind_status", kind, status),
        Index("ix_review_items_site_camera", site_id, camera_id),
        CheckConstraint("kind IN ('ood', 'audit')", name="ck_review_items_kind"),
    )


class ReviewAction(Base):
    """One operator action (label, bulk label, review, discard, undo); its action_id makes a retry a no-op."""

    __tablename__ = "review_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[str] = mapped_column(String(48), unique=True)
    operator: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # label | review | discard | undo
    label: Mapped[str | None] = mapped_column(String(64))
    new_class: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    undoes_action_id: Mapped[int | None] = mapped_column(ForeignKey("review_actions.id"))
    undone: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    decisions: Mapped[list[ReviewDecision]] = relationship(back_populates="action", order_by="ReviewDecision.id")

    __table_args__ = (Index("ix_review_actions_operator_recent", operator, id.desc()),)


class ReviewDecision(Base):
    """What one action did to one queue item, with the state before it: enough to undo it."""

    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("review_actions.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    previous_status: Mapped[str] = mapped_column(String(16))
    previous_label: Mapped[str | None] = mapped_column(String(64))
    new_status: Mapped[str] = mapped_column(String(16))
    new_label: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(36))

    action: Mapped[ReviewAction] = relationship(back_populates="decisions")


class ImportedImage(Base):
    """An image uploaded with its class; a second import of the same bytes and class has no effect."""

    __tablename__ = "imported_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    object_key: Mapped[str] = mapped_column(String(1024))
    file_name: Mapped[str] = mapped_column(String(255))
    label: Mapped[str] = mapped_column(String(64))
    operator: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(36))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LabelOutbox(Base):
    """Label-log events, committed in the transaction of the action that caused them and sent to Kafka after.

    A broker outage leaves rows unpublished instead of losing actions; a drainer sends them in id order.
    """

    __tablename__ = "label_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    # A row Kafka can never take (it fails its contract): dead-lettered with this reason and no longer sent.
    rejected_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_label_outbox_unpublished", id, postgresql_where=published_at.is_(None)),)


class DatasetVersion(Base):
    """A dataset version: its parent plus the delta rows in `dataset_entries`, never a copy of the parent.

    A snapshot version holds its full membership as entries, so resolution stops there.
    """

    __tablename__ = "dataset_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    snapshot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The CreateVersionRequested it answers: a replayed request finds its version instead of making another.
    request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str] = mapped_column(Text, default="", server_default="")
    stats: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"total": n, "per_class": {...}, "per_split": {...}}
    changes: Mapped[dict[str, int]] = mapped_column(JSON)  # {"added": n, "relabelled": n, "removed": n}
    classes_introduced: Mapped[list[str]] = mapped_column(JSON, default=list)
    manifest_uri: Mapped[str | None] = mapped_column(String(512))
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    announced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # DatasetVersionCreated acked
    active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    # At most one version is the active one (the one training uses by default).
    __table_args__ = (Index("uq_dataset_versions_one_active", active, unique=True, postgresql_where=active),)


class DatasetEntry(Base):
    """One image's state in one version: present with a label and split, or removed from the parent's set."""

    __tablename__ = "dataset_entries"

    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    present: Mapped[bool] = mapped_column(Boolean)
    label: Mapped[str | None] = mapped_column(String(64))
    split: Mapped[str | None] = mapped_column(String(8))
    object_key: Mapped[str | None] = mapped_column(String(1024))
    site_id: Mapped[str | None] = mapped_column(String(64))  # where the image was captured; None: seed or import

    # An image's latest state along a version chain is found through this index, not by scanning versions.
    __table_args__ = (Index("ix_dataset_entries_sha256_version", sha256, version_id),)


class StagedLabel(Base):
    """The version builder's staging: the latest label-log decision per image not yet in a version.

    `log_partition`/`log_offset` locate the decision in the label log (keyed by image, so one partition per
    image): an event at or before them is a redelivery and changes nothing.
    """

    __tablename__ = "staged_labels"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str | None] = mapped_column(String(64))  # None: discarded or retracted, leave it out
    object_key: Mapped[str] = mapped_column(String(1024))
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(32))
    operator_id: Mapped[str] = mapped_column(String(64))
    log_partition: Mapped[int] = mapped_column(Integer)
    log_offset: Mapped[int] = mapped_column(Integer)
    # False once a version took the decision; the row stays as the offset mark for redeliveries.
    pending: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    site_id: Mapped[str | None] = mapped_column(String(64))  # where the image was captured; None: imported
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TrainingRun(Base):
    """One attempt of the trainer at one DatasetVersionCreated: config, status, progress, metrics, verdict.

    A request is retried as a new attempt (a new row, a new run id) after an interrupted or failed attempt.
    """

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), unique=True)  # also the candidate's model version
    dataset_version: Mapped[str] = mapped_column(String(64))
    request_event_id: Mapped[str] = mapped_column(String(36))  # the DatasetVersionCreated event
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="running")  # queued | running | completed | failed
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the latest epoch record
    log: Mapped[list[str]] = mapped_column(JSON, default=list)  # timestamped lines
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the candidate's metrics.json
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"model_version", "metrics"} or None
    recommendation: Mapped[str | None] = mapped_column(String(16))  # promote | keep | review
    reason: Mapped[str | None] = mapped_column(Text)
    per_class_deltas: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model_version: Mapped[str | None] = mapped_column(String(64))
    artefact_uri: Mapped[str | None] = mapped_column(String(512))
    promoted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    error: Mapped[str | None] = mapped_column(Text)
    retryable: Mapped[bool | None] = mapped_column(Boolean)  # of a failed run: will the request run again

    __table_args__ = (Index("uq_training_runs_version_attempt", dataset_version, attempt, unique=True),)


class ReplayedDeadLetter(Base):
    """A dead letter whose original record was published again: a second replay of it publishes nothing."""

    __tablename__ = "replayed_dead_letters"

    dead_letter_event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    original_topic: Mapped[str] = mapped_column(String(255))
    original_event_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(32))
    replayed_by: Mapped[str] = mapped_column(String(64))
    replayed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AdminAudit(Base):
    """Who promoted, rolled back, activated, imported or changed an operator, what, and when (append only)."""

    __tablename__ = "admin_audit"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    operator: Mapped[str] = mapped_column(String(64))  # who did it ("cli:<user>" from the command line)
    action: Mapped[str] = mapped_column(String(32))  # promote | rollback | activate | import | ...
    subject: Mapped[str] = mapped_column(String(255))  # the model version, dataset version, class, operator...
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_admin_audit_action_at", action, at), Index("ix_admin_audit_subject", subject))


class SignInFailure(Base):
    """One failed sign-in (never the password): the throttle counts these per account and per client address."""

    __tablename__ = "sign_in_failures"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))  # lower-cased as typed (may name no account)
    client: Mapped[str] = mapped_column(String(64))  # the client's address
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_sign_in_failures_username", username, failed_at),
                      Index("ix_sign_in_failures_client", client, failed_at))


class CameraToken(Base):
    """A bearer token of the HTTP ingest, stored only as its sha256; it fixes the camera and site it posts as."""

    __tablename__ = "camera_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to tell tokens apart in a list
    camera_id: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64), default="cli", server_default="cli")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ScoringTally(Base):
    """Images scored per day, site, camera and model version, by outcome: the denominators of OOD and audit rates."""

    __tablename__ = "scoring_tallies"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    classified: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    ood: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class MonitorOffset(Base):
    """The scoring monitor's next offset per partition, written in the transaction of what it read."""

    __tablename__ = "monitor_offsets"

    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)


class CameraDrift(Base):
    """Each camera's latest drift check against the serving model's in-distribution reference."""

    __tablename__ = "camera_drift"

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    drifting: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    images: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # in the window checked
    ood_rate: Mapped[float | None] = mapped_column(Float)
    energy_ks: Mapped[float | None] = mapped_column(Float)
    median_energy_shift: Mapped[float | None] = mapped_column(Float)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    drifting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
