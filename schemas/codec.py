"""Validate events against the JSON Schemas in schemas/json on produce and on consume.

Schemas reference each other by $id through a local registry (nothing is fetched over the network); the
references are inlined once per schema at first use, and the validators are cached.

A valid event passes fastjsonschema's compiled check (about a tenth of jsonschema's cost: a scoring worker
validates four events per image). jsonschema stays the authority: whatever the compiled check refuses is judged
again by jsonschema, which names the field; the unit tests hold the two to the same verdicts.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from schemas.events import SCHEMA_VERSION, DeadLetterReason, Event, EventType, parse_timestamp, utc_now

if TYPE_CHECKING:
    from referencing._core import Resolver  # not re-exported by the package

_BASE_URI = "https://wastex-stream.example/schemas/"
_ENVELOPE = "envelope"
_DETAIL_LIMIT = 4000  # DeadLetter payload.detail maxLength
_KNOWN_TYPES = frozenset(EventType)
_ANNOTATIONS = frozenset({"title", "description", "$comment"})

# Only the formats the schemas use. jsonschema checks "date-time" only when the optional
# rfc3339-validator is installed; this checker makes the contract hold without it.
FORMAT_CHECKER = FormatChecker(formats=("uuid",))


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_date_time(instance: object) -> bool:
    if isinstance(instance, str):
        parse_timestamp(instance)
    return True


class InvalidEvent(ValueError):
    """A record that is not a valid event: `path` locates the field, `reason` is the dead-letter code."""

    def __init__(
        self, message: str, *, path: str = "", reason: DeadLetterReason = DeadLetterReason.SCHEMA_INVALID
    ) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path
        self.reason = reason


def schema_files() -> dict[str, dict[str, Any]]:
    """Every schema document by file stem: one per event type, plus 'envelope' and 'common'."""
    folder = resources.files(__package__).joinpath("json")
    return {
        entry.name.removesuffix(".json"): json.loads(entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    }


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (document["$id"], Resource.from_contents(document)) for document in schema_files().values()
    )


def _inline(node: Any, resolver: Resolver, stack: tuple[int, ...] = ()) -> Any:
    """Replace every $ref by the schema it points to (through the registry), once, at load time."""
    if isinstance(node, list):
        return [_inline(item, resolver, stack) for item in node]
    if not isinstance(node, dict):
        return node
    inlined = {key: _inline(value, resolver, stack) for key, value in node.items() if key != "$ref"}
    if "$ref" not in node:
        return inlined
    resolved = resolver.lookup(node["$ref"])
    if id(resolved.contents) in stack:
        raise ValueError(f"recursive $ref {node['$ref']!r} cannot be inlined")
    target = _inline(resolved.contents, resolved.resolver, (*stack, id(resolved.contents)))
    if "$id" in target:  # a whole file: its identity and definitions are already inlined where used
        target = {key: value for key, value in target.items() if key not in ("$id", "$schema", "$defs")}
    if inlined.keys() <= _ANNOTATIONS:
        return {**target, **inlined}
    return {"allOf": [target], **inlined}


@cache
def _bundled_schema(name: str) -> dict[str, Any]:
    """A schema with its $refs inlined: validating against it is twice as fast as following references."""
    uri = f"{_BASE_URI}{name}.json"
    registry = _registry()
    return _inline(registry[uri].contents, registry.resolver(uri))


_NUMBER = {"type": "number"}
_DRAFT_ITEMS = Draft202012Validator.VALIDATORS["items"]


def _items(validator: Any, items: Any, instance: Any, schema: Mapping[str, Any]) -> Any:
    """`items`, with a fast path for `{"type": "number"}` arrays: an embedding's 1280 numbers took 35 ms per event
    one by one (most of a scoring worker's CPU); a list of plain numbers needs no error objects."""
    if items == _NUMBER and isinstance(instance, list) and all(
            type(value) is float or type(value) is int for value in instance):
        return
    yield from _DRAFT_ITEMS(validator, items, instance, schema)


_EventValidator = validators.extend(Draft202012Validator, {"items": _items})


@cache
def _validator(name: str) -> Draft202012Validator:
    return _EventValidator(_bundled_schema(name), format_checker=FORMAT_CHECKER)


def _conforms(format_name: str) -> Callable[[str], bool]:
    return lambda text: FORMAT_CHECKER.conforms(text, format_name)


# The compiled check tests exactly the formats FORMAT_CHECKER tests, and no other ("uri" is only an annotation).
_COMPILED_FORMATS = {"date-time": _conforms("date-time"), "uuid": _conforms("uuid"), "uri": lambda _text: True}


@cache
def _compiled_check(name: str) -> Callable[[Any], Any]:
    """fastjsonschema's code for the bundled schema (its keywords are all draft 7's); it raises on any error."""
    schema = {key: value for key, value in _bundled_schema(name).items() if key != "$schema"}
    return fastjsonschema.compile(schema, formats=_COMPILED_FORMATS, use_default=False)


def _path(error: ValidationError) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
    return text.removeprefix(".")


def _check(name: str, document: Any) -> None:
    try:
        _compiled_check(name)(document)
        return
    except fastjsonschema.JsonSchemaException:
        pass  # jsonschema decides, and says where
    error = best_match(_validator(name).iter_errors(document))
    if error is not None:
        raise InvalidEvent(error.message, path=_path(error))


def validate(document: Any) -> Event:
    """Validate a parsed event document (envelope and payload) and return it as an Event."""
    event_type = document.get("event_type") if isinstance(document, dict) else None
    if not (isinstance(event_type, str) and event_type in _KNOWN_TYPES):
        # Report what is wrong with the envelope first, if anything: it is the likelier mistake.
        _check(_ENVELOPE, document)
        raise InvalidEvent(f"{event_type!r} is not a known event type", path="event_type")
    _check(event_type, document)
    return Event(
        event_id=document["event_id"],
        event_type=EventType(event_type),
        schema_version=document["schema_version"],
        occurred_at=document["occurred_at"],
        source=document["source"],
        payload=document["payload"],
    )


def new_event(
    event_type: EventType | str,
    payload: Mapping[str, Any],
    source: str,
    *,
    event_id: str | None = None,
    occurred_at: str | None = None,
) -> Event:
    """Wrap a payload in a new envelope (uuid4 id, UTC now) and validate it.

    Pass the original event_id when sending an event again (an outbox retry): consumers deduplicate by it.
    """
    return validate(
        {
            "event_id": event_id or str(uuid.uuid4()),
            "event_type": str(event_type),
            "schema_version": SCHEMA_VERSION,
            "occurred_at": occurred_at or utc_now(),
            "source": source,
            "payload": dict(payload),
        }
    )


def _dumps(event: Event) -> bytes:
    try:
        text = json.dumps(
            event.to_document(), separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
        )
    except ValueError as error:  # NaN or infinity: valid numbers to jsonschema, but not JSON
        raise InvalidEvent(str(error)) from error
    return text.encode("utf-8")


def encode(event: Event) -> bytes:
    """Validate an event and serialise it deterministically: compact, sorted keys, UTF-8."""
    return _dumps(validate(event.to_document()))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _parse(raw: bytes | str) -> Any:
    return json.loads(raw, parse_constant=_reject_constant)


def decode_event(raw: bytes | str) -> Event:
    """Parse and validate one record value; raises InvalidEvent, never returns a bad event."""
    try:
        document = _parse(raw)
    except (ValueError, RecursionError) as error:
        message = f"not a JSON document: {error}"
        raise InvalidEvent(message, reason=DeadLetterReason.MALFORMED_EVENT) from error
    return validate(document)


@dataclass(frozen=True)
class OriginalRecord:
    """The consumed Kafka record a dead letter carries, bytes restored."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...] = ()


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _is_utf8(blob: bytes) -> bool:
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _to_text(blob: bytes, encoding: str) -> str:
    return blob.decode("utf-8") if encoding == "utf-8" else base64.b64encode(blob).decode("ascii")


def _from_text(text: str, encoding: str) -> bytes:
    return text.encode("utf-8") if encoding == "utf-8" else base64.b64decode(text, validate=True)


def _original_event_id(raw: bytes) -> str | None:
    try:
        document = _parse(raw)
    except (ValueError, RecursionError):
        return None
    event_id = document.get("event_id") if isinstance(document, dict) else None
    return event_id if isinstance(event_id, str) and FORMAT_CHECKER.conforms(event_id, "uuid") else None


def dead_letter_event(
    raw: bytes | str,
    error: BaseException | str,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | str | None,
    service: str,
    reason: DeadLetterReason | None = None,
    headers: Sequence[tuple[str, bytes | str | None]] = (),
    event_id: str | None = None,
) -> Event:
    """A DeadLetter event carrying the original record byte for byte.

    reason defaults to the InvalidEvent's own reason, else processing_error. Pass a deterministic
    event_id when the same failure may be reported again after a redelivery.
    """
    value = _as_bytes(raw)
    key_bytes = None if key is None else _as_bytes(key)
    header_bytes = [(name, None if data is None else _as_bytes(data)) for name, data in headers]
    blobs = [value, key_bytes, *(data for _, data in header_bytes)]
    encoding = "utf-8" if all(_is_utf8(blob) for blob in blobs if blob is not None) else "base64"
    original: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key_bytes is None else _to_text(key_bytes, encoding),
        "value": _to_text(value, encoding),
        "encoding": encoding,
    }
    if header_bytes:
        original["headers"] = [
            {"name": name, "value": None if data is None else _to_text(data, encoding)}
            for name, data in header_bytes
        ]
    if reason is None:
        reason = error.reason if isinstance(error, InvalidEvent) else DeadLetterReason.PROCESSING_ERROR
    detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    payload = {
        "reason": str(reason),
        "detail": detail[:_DETAIL_LIMIT],
        "original": original,
        "original_event_id": _original_event_id(value),
        "failed_at": utc_now(),
        "service": service,
    }
    return new_event(EventType.DEAD_LETTER, payload, service, event_id=event_id)


def original_record(dead_letter: Event) -> OriginalRecord:
    """The record a DeadLetter was made from, e.g. to replay it once the cause is fixed."""
    original = dead_letter.payload["original"]
    encoding = original["encoding"]
    return OriginalRecord(
        topic=original["topic"],
        partition=original["partition"],
        offset=original["offset"],
        key=None if original["key"] is None else _from_text(original["key"], encoding),
        value=_from_text(original["value"], encoding),
        headers=tuple(
            (header["name"], None if header["value"] is None else _from_text(header["value"], encoding))
            for header in original.get("headers", ())
        ),
    )
