"""One micro-batch of captured records -> exactly one outcome each: classified, OOD or dead letter.

The three steps run where they belong: `prepare` (validate, fetch, decode) in the I/O pool, `infer` in
the model's own thread, `route` anywhere. Outcome ids derive from the captured record, so a record scored
again after a redelivery produces the same ids and consumers drop the repeat. A classified image that the
content-hash rule picks for audit (infra.image_retention.audits_sample) says so, with its classes and
probabilities, and is never handed to deletion: the review queue shows it to an operator. An image of a camera
marked drifting (camera_drift.py) is judged with the model's stricter pair of thresholds; its outcome says so and,
if flagged, what the regular pair would have decided, so the drift check still measures the camera's look.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Container
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from infra.image_retention import audits_sample, keeps_sample
from infra.retry import is_transient
from schemas.codec import InvalidEvent, dead_letter_event, decode_event, new_event
from schemas.events import DeadLetterReason, Event, EventType
from stream_apps.scoring.active_model import ActiveModel
from stream_apps.scoring.decode import BadImage, ImageLimits, decode_image
from stream_apps.scoring.image_store import ImageStore
from stream_apps.scoring.ood import Verdict, judge

SOURCE = "stream_apps.scoring"
EMBEDDING_DIGITS = 4
_POWERS_OF_TEN = np.array([float(f"1e{k}") for k in range(309)])  # exact decimal powers, as parsed
_OUTCOME_IDS = uuid.UUID("5f0c1f1e-2b7a-4c55-9a43-3f1f1b0f6d21")


class Kind(StrEnum):
    CLASSIFIED = "classified"
    OOD = "ood"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class CapturedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    event: Event
    record: CapturedRecord
    # (bucket, key) of a classified capture no longer needed: image_retention deletes it unless something refers to it
    delete_after: tuple[str, str] | None = None


@dataclass
class PreparedBatch:
    records: list[CapturedRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    dead_letters: list[Outcome] = field(default_factory=list)

    def stacked(self) -> np.ndarray:
        return np.stack(self.pixels).astype(np.float32)


def outcome_id(record: CapturedRecord) -> str:
    return str(uuid.uuid5(_OUTCOME_IDS, f"{record.topic}/{record.partition}/{record.offset}"))


def dead_letter(record: CapturedRecord, reason: DeadLetterReason | None, error: BaseException | str) -> Outcome:
    event = dead_letter_event(record.value, error, topic=record.topic, partition=record.partition,
                              offset=record.offset, key=record.key, service=SOURCE, reason=reason,
                              event_id=outcome_id(record))
    return Outcome(Kind.DEAD_LETTER, event, record)


class BatchScorer:
    def __init__(self, store: ImageStore, limits: ImageLimits, keep_rate: float = 0.0,
                 audit_rate: float = 0.0, drifting_cameras: Container[str] = frozenset()) -> None:
        self.store = store
        self._limits = limits
        self._keep_rate = keep_rate
        self._audit_rate = audit_rate
        self._drifting_cameras = drifting_cameras

    def _prepare_one(self, record: CapturedRecord, size: int) -> tuple[Event, np.ndarray] | Outcome:
        try:
            event = decode_event(record.value)
            if event.event_type is not EventType.IMAGE_CAPTURED:
                raise InvalidEvent(f"{event.event_type} does not belong on the captured topic", path="event_type")
            payload = event.payload
            data = self.store.fetch(payload["bucket"], payload["object_key"])
            if hashlib.sha256(data).hexdigest() != payload["sha256"]:
                raise BadImage("decode_error", "the object's sha256 differs from the event's")
            return event, decode_image(data, size, self._limits)
        except InvalidEvent as error:
            return dead_letter(record, error.reason, error)
        except BadImage as error:
            return dead_letter(record, DeadLetterReason(error.reason), error.detail)
        except Exception as error:
            if is_transient(error):
                raise  # MinIO unreachable or busy: not the record's fault, the caller waits and tries again
            # Anything else that only this record meets must not stop the worker.
            return dead_letter(record, DeadLetterReason.PROCESSING_ERROR, error)

    def prepare(self, records: list[CapturedRecord], size: int, pool: Executor | None = None) -> PreparedBatch:
        """Validate, fetch and decode every record (in parallel on `pool` when given). A bad record becomes a
        dead letter; a passing failure (`infra.retry.is_transient`) is raised, for the whole batch to wait."""
        results = (pool.map(lambda r: self._prepare_one(r, size), records) if pool is not None
                   else (self._prepare_one(r, size) for r in records))
        batch = PreparedBatch()
        for record, result in zip(records, results, strict=True):
            if isinstance(result, Outcome):
                batch.dead_letters.append(result)
            else:
                batch.records.append(record)
                batch.events.append(result[0])
                batch.pixels.append(result[1])
        return batch

    def route(self, batch: PreparedBatch, logits: np.ndarray, model: ActiveModel,
              embeddings: np.ndarray | None = None) -> list[Outcome]:
        """Outcomes in captured-offset order (counting relies on that order per partition)."""
        outcomes = list(batch.dead_letters)
        rows = embeddings if embeddings is not None else [None] * len(batch.records)
        regular = judge(logits, model.thresholds)
        watched = [captured.payload["camera_id"] in self._drifting_cameras for captured in batch.events]
        strict = judge(logits, model.drifting_camera_thresholds) if any(watched) else regular
        for record, captured, row_logits, row_embedding, verdict, strict_verdict, drifting in zip(
                batch.records, batch.events, logits, rows, regular, strict, watched, strict=True):
            outcomes.append(self._outcome(record, captured, row_logits, row_embedding,
                                          strict_verdict if drifting else verdict, model,
                                          verdict if drifting else None))
        return sorted(outcomes, key=lambda o: (o.record.partition, o.record.offset))

    def _outcome(self, record, captured, row_logits, row_embedding, verdict, model: ActiveModel,
                 regular: Verdict | None) -> Outcome:
        """``regular``: the regular pair's verdict when ``verdict`` is the stricter pair's (a drifting camera)."""
        p = captured.payload
        common = {
            "image": {"bucket": p["bucket"], "object_key": p["object_key"], "sha256": p["sha256"]},
            "camera_id": p["camera_id"],
            "site_id": p["site_id"],
            "captured_at": p["captured_at"],
            "predicted_class": model.classes[verdict.predicted_index],
            "confidence": min(1.0, verdict.confidence),
            "energy": verdict.energy,
            "model_version": model.version,
            "model_digest": model.digest,
            "captured_event_id": captured.event_id,
        }
        if regular is not None:
            common["camera_drifting"] = True
        if verdict.is_ood:
            applied = model.thresholds if regular is None else model.drifting_camera_thresholds
            payload = {**common, "logits": [float(v) for v in row_logits],
                       "probabilities": [float(v) for v in verdict.probabilities], "classes": model.classes,
                       "thresholds": {"tau_energy": applied.tau_energy, "tau_softmax": applied.tau_softmax},
                       "reason": verdict.ood_reason}
            if regular is not None:
                payload["regular_reason"] = regular.ood_reason
            if row_embedding is not None:
                payload["embedding"] = compact_embedding(row_embedding)
            event = new_event(EventType.IMAGE_FLAGGED_OOD, payload, SOURCE, event_id=outcome_id(record))
            return Outcome(Kind.OOD, event, record)
        payload = {**common, "captured_position": {"partition": record.partition, "offset": record.offset}}
        audit = audits_sample(p["sha256"], self._audit_rate)
        if audit:  # the review queue shows what the model saw; the image stays for the operator's answer
            payload |= {"audit": True, "classes": model.classes,
                        "probabilities": [float(v) for v in verdict.probabilities]}
            if row_embedding is not None:
                payload["embedding"] = compact_embedding(row_embedding)
        event = new_event(EventType.IMAGE_CLASSIFIED, payload, SOURCE, event_id=outcome_id(record))
        keep = audit or keeps_sample(p["sha256"], self._keep_rate)
        return Outcome(Kind.CLASSIFIED, event, record, None if keep else (p["bucket"], p["object_key"]))


def compact_embedding(row: np.ndarray) -> list[float]:
    """The embedding to 4 significant digits: grouping needs no more, and it keeps the event a few kB.

    Vectorised (formatting 1280 numbers one by one costs milliseconds per image); dividing by an exact power of
    ten rounds correctly, so each value is the float that its 4-digit decimal spelling parses to.
    """
    values = np.asarray(row, dtype=np.float64)
    magnitude = np.floor(np.log10(np.abs(values), out=np.zeros_like(values), where=values != 0)).astype(int)
    shift = EMBEDDING_DIGITS - 1 - magnitude
    scale = _POWERS_OF_TEN[np.clip(np.abs(shift), 0, len(_POWERS_OF_TEN) - 1)]
    return np.where(shift >= 0, np.round(values * scale) / scale, np.round(values / scale) * scale).tolist()


def infer(model: ActiveModel, batch: PreparedBatch) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and penultimate embeddings (None when the model's export has none) from one forward pass."""
    if not batch.records:
        return np.zeros((0, len(model.classes)), dtype=np.float32), None
    return model.runtime.scores(batch.stacked())
