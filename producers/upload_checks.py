"""What an upload must be before it is stored, and which failures mean "the stores are down, try again".

Shared by the HTTP ingest and the watch-folder: both refuse bad files with an HTTP status and a message
that names the limit, and both keep a file (or let the client retry) when Kafka or MinIO fail. The image
rules themselves are infra/images.py's; here they become HTTP statuses.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from confluent_kafka import KafkaException
from minio.error import MinioException
from urllib3.exceptions import HTTPError as Urllib3Error

from infra.clients import minio_client
from infra.images import ImageRefused, check_image
from infra.publisher import EventPublisher, PublishError
from infra.settings import Settings
from producers.capture import CaptureSink

# The ids PostgreSQL, Kafka keys, file names and URLs all take as they are: no whitespace, NUL, slash or quote.
_IDENTIFIER = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# The upload was fine but a store did not confirm it: the same upload can be retried (its object key is its
# sha256; at worst the event is announced twice, which consumers tolerate).
SERVICE_ERRORS: tuple[type[BaseException], ...] = (PublishError, KafkaException, MinioException, Urllib3Error)

# librdkafka keeps retrying an unacknowledged event for 5 minutes by default, so an event reported as
# failed could still be delivered after the client has retried: a duplicate. Give up well before
# CaptureSink.flush does (30 s), so a reported failure is final.
DELIVERY_TIMEOUT_MS = 10_000


class UploadRefused(ValueError):
    """An upload that will never be accepted as it is; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_upload(data: bytes, max_bytes: int, max_pixels: int) -> str:
    """The content type of an acceptable image, read from its bytes; raises UploadRefused otherwise."""
    try:
        return check_image(data, max_bytes, max_pixels)
    except ImageRefused as refusal:
        raise UploadRefused(refusal.http_status, refusal.message) from None


def check_identifier(field: str, value: str | None) -> str:
    """A camera or site id as ImageCaptured requires it: 1 to 64 of A-Z a-z 0-9 . _ : -"""
    if value is None or value == "":
        raise UploadRefused(400, f"{field} is required")
    if not _IDENTIFIER.fullmatch(value):
        raise UploadRefused(400, f"{field} must be 1 to 64 characters of A-Z a-z 0-9 . _ : -, got {value[:80]!r}")
    return value


def check_captured_at(moment: datetime, clock_skew_s: float, now: datetime | None = None) -> datetime:
    """A capture time no further in the future than the allowed clock skew: far-future windows would push
    the real ones out of the counts."""
    latest = (now or datetime.now(UTC)) + timedelta(seconds=clock_skew_s)
    if moment > latest:
        raise UploadRefused(400, f"captured_at {moment.isoformat()} is more than {clock_skew_s:g} s in the future "
                                 "(check the device's clock)")
    return moment


def open_sink(settings: Settings) -> CaptureSink:
    """A sink to the configured stores whose failures are final within DELIVERY_TIMEOUT_MS."""
    publisher = EventPublisher(settings, **{"message.timeout.ms": DELIVERY_TIMEOUT_MS})
    return CaptureSink(minio_client(settings), settings.bucket_images, publisher)
