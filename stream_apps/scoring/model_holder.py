"""The model a scoring worker serves, kept in step with the registry's production row.

The registry, not the announcement, says what to serve: the holder reads the production row at start, on every
ModelPromoted, every `registry_check_s`, and again with capped backoff after a failure (a store down, a download
that did not match its digest), so a lost announcement or a failed swap heals by itself. A batch takes the
current model when it starts, so a swap lands between batches; the next model is loaded and warmed up in a
thread of its own while the current one serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from infra.retry import Backoff, Degradation, is_transient
from infra.settings import Settings
from schemas.events import Event
from stream_apps.scoring.active_model import (
    ActiveModel,
    RegisteredModel,
    UnservableModel,
    load_registered,
    registered_production,
)
from stream_apps.scoring.worker_metrics import UNRECORDED, ScoringMetrics

log = logging.getLogger(__name__)
NO_MODEL_POLL_S = 5.0  # while the registry has no production model yet
# A ModelPromoted is sent just before the registry commits: look again soon until the row agrees, for a while.
ANNOUNCED_RECHECK_S = 0.5
ANNOUNCED_WAIT_S = 30.0
ANNOUNCED_KEPT = 16  # announcements awaited at once; a flood of forged ones cannot grow the holder without bound
WAITING_FOR = "model"  # the Degradation entry of this holder


class ModelHolder:
    def __init__(self, settings: Settings, batch_size: int, degradation: Degradation, threads: int | None = None,
                 metrics: ScoringMetrics = UNRECORDED) -> None:
        self._settings = settings
        self._metrics = metrics
        self._batch_size = batch_size
        self._threads = threads  # the runtime's compute threads (infra.cpu_budget); None: every usable core
        self._degradation = degradation
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="model-loader")
        self._backoff = Backoff(cap_s=settings.retry_max_delay_s)
        self._check_now = asyncio.Event()
        self._serving = asyncio.Event()
        self._announced: dict[tuple[str, str], float] = {}  # (version, digest) -> when, until the registry agrees
        self.current: ActiveModel | None = None

    async def ready(self) -> ActiveModel:
        """The model to score the next batch with; waits until the first one serves."""
        await self._serving.wait()
        assert self.current is not None
        return self.current

    def announced(self, promoted: Event) -> None:
        """A ModelPromoted arrived: check the registry now (the event only says that it is worth looking)."""
        payload = promoted.payload
        log.info("models.promoted announces %s (digest %s); checking the registry", payload["model_version"],
                 payload["artefact_digest"])
        announced = (payload["model_version"], payload["artefact_digest"])
        self._announced.pop(announced, None)
        self._announced[announced] = time.monotonic()
        while len(self._announced) > ANNOUNCED_KEPT:
            self._ignore(next(iter(self._announced)), "too many announcements at once")
        self._check_now.set()

    async def keep_in_step(self) -> None:
        """Serve the registry's production model, for as long as the worker runs."""
        while True:
            self._check_now.clear()
            delay = await self.look()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_now.wait(), delay)

    async def look(self) -> float:
        """One look at the registry, a swap if it names another artefact; returns the delay to the next look."""
        loop = asyncio.get_running_loop()
        try:
            registered = await loop.run_in_executor(self._loader, registered_production, self._settings)
        except Exception as error:
            return self._failed("reading the registry's production model", error)
        if registered is None:
            log.warning("no production model in the registry yet; looking again in %.0f s", NO_MODEL_POLL_S)
            if self.current is None:  # nothing scores meanwhile: say so in `/health/`
                self._degradation.waiting(WAITING_FOR, "no production model in the registry yet")
            return NO_MODEL_POLL_S
        if not self._serves(registered):
            try:
                model = await loop.run_in_executor(self._loader, self._load_warm, registered)
            except Exception as error:
                return self._failed(f"loading model {registered.version}", error)
            previous, self.current = self.current, model
            self._serving.set()
            self._metrics.model_served(model, previous)
            log.info("serving model %s (digest %s, %s) instead of %s", model.version, model.digest,
                     model.runtime.runtime, previous.version if previous else None)
        self._backoff.reset()
        self._degradation.recovered(WAITING_FOR)
        return self._next_look(registered)

    def _serves(self, registered: RegisteredModel) -> bool:
        current = self.current
        return current is not None and (current.version, current.digest) == (registered.version, registered.digest)

    def _next_look(self, registered: RegisteredModel) -> float:
        """Soon while an announcement the registry does not show yet is awaited; one no longer awaited is dropped."""
        shown = self._announced.get((registered.version, registered.digest))
        if shown is not None:  # it, and every announcement before it (superseded), are done with
            self._announced = {announced: when for announced, when in self._announced.items() if when > shown}
        now = time.monotonic()
        for announced, when in list(self._announced.items()):
            if now - when >= ANNOUNCED_WAIT_S:
                self._ignore(announced, f"the registry's production model is {registered.version} (digest "
                                        f"{registered.digest})")
        return ANNOUNCED_RECHECK_S if self._announced else self._settings.registry_check_s

    def _ignore(self, announced: tuple[str, str], why: str) -> None:
        del self._announced[announced]
        log.warning("ignoring the announcement of model %s (digest %s): %s, and only the registry says what serves",
                    *announced, why)

    def _failed(self, what: str, error: Exception) -> float:
        """Log and report a failed look or load; the old model keeps serving and the holder looks again later."""
        delay = self._backoff.next_delay()
        serving = self.current.version if self.current is not None else None
        reason = f"{what}: {type(error).__name__}: {error}"[:300]
        if is_transient(error):
            log.warning("%s waits for a passing failure, retrying in %.1f s (serving %s): %s", what, delay,
                        serving, error)
        elif isinstance(error, UnservableModel):
            log.error("%s refused, retrying in %.1f s (serving %s): %s", what, delay, serving, error)
        else:
            log.error("%s failed, retrying in %.1f s (serving %s)", what, delay, serving, exc_info=error)
        self._degradation.waiting(WAITING_FOR, reason)
        return delay

    def _load_warm(self, registered: RegisteredModel) -> ActiveModel:
        model = load_registered(self._settings, registered, self._threads)
        size = model.input_size
        # The first call allocates the interpreter's tensors; paying for it here keeps it off a live batch.
        model.runtime.logits(np.zeros((self._batch_size, size, size, 3), np.float32))
        return model

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)
