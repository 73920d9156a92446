"""The scoring monitor's memory: per camera, its images of the last window, and the outcome ids read lately.

A camera's window holds (captured_at, energy, is OOD, model version) of its images captured in the last
`window_s` seconds (a capture time in the future counts as the moment it was read, so a wrong clock cannot keep
images in the window), at most `max_per_camera` of them, newest kept. The ids of the outcome events read in the
last `window_s` seconds are kept too: an outcome delivered twice (scoring sends one again after a passing
failure, with the same id) is recognised and counted once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MAX_PER_CAMERA = 50_000  # the KS statistic of 50,000 images is within 0.01 of the population's


@dataclass(frozen=True)
class Observation:
    captured_at: float  # POSIX seconds
    energy: float
    ood: bool
    model_version: str


@dataclass(frozen=True)
class CameraWindow:
    """What a drift check reads: the window's images that the camera's latest model version scored."""

    camera_id: str
    site_id: str
    model_version: str
    energies: list[float]
    ood: list[bool]


@dataclass
class _Camera:
    site_id: str
    model_version: str
    observations: deque[Observation] = field(default_factory=deque)


class CameraWindows:
    def __init__(self, window_s: float, max_per_camera: int = MAX_PER_CAMERA) -> None:
        self._window_s = window_s
        self._max_per_camera = max_per_camera
        self._cameras: dict[str, _Camera] = {}
        self._seen: set[str] = set()
        self._seen_order: deque[tuple[float, str]] = deque()

    def seen(self, event_id: str) -> bool:
        return event_id in self._seen

    def add(self, event_id: str, camera_id: str, site_id: str, observation: Observation, read_at: float) -> None:
        """One outcome read at `read_at` (POSIX seconds)."""
        if event_id not in self._seen:
            self._seen.add(event_id)
            self._seen_order.append((read_at, event_id))
        if observation.captured_at > read_at:
            observation = Observation(read_at, observation.energy, observation.ood, observation.model_version)
        camera = self._cameras.get(camera_id)
        if camera is None:
            camera = self._cameras[camera_id] = _Camera(site_id, observation.model_version,
                                                        deque(maxlen=self._max_per_camera))
        # The latest image says which model now scores the camera, and at which site it is.
        camera.site_id, camera.model_version = site_id, observation.model_version
        camera.observations.append(observation)

    def prune(self, now: float) -> None:
        """Forget images captured, and outcome ids read, before `now - window_s`; and cameras left empty."""
        start = now - self._window_s
        while self._seen_order and self._seen_order[0][0] < start:
            self._seen.discard(self._seen_order.popleft()[1])
        for camera_id in list(self._cameras):
            camera = self._cameras[camera_id]
            camera.observations = deque((o for o in camera.observations if o.captured_at >= start),
                                        maxlen=self._max_per_camera)
            if not camera.observations:
                del self._cameras[camera_id]

    def windows(self) -> list[CameraWindow]:
        """Each camera's window, restricted to its latest model version (energies of two models do not compare)."""
        result = []
        for camera_id, camera in sorted(self._cameras.items()):
            current = [o for o in camera.observations if o.model_version == camera.model_version]
            if not current:  # the latest model's images were captured earlier than the window, the older ones not
                continue
            result.append(CameraWindow(camera_id, camera.site_id, camera.model_version,
                                       [o.energy for o in current], [o.ood for o in current]))
        return result

    def clear(self) -> None:
        self._cameras.clear()
        self._seen.clear()
        self._seen_order.clear()
