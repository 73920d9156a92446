"""The scoring Faust app: its stages registered on one StreamApp.

- scoring_agent.py: captured images -> classified / OOD / dead letters, with the production model served;
- counting_agents.py: exact counts per class and camera into counts.totals and counts.windows (`/counts/`);
- `/health/`: the model served, the cameras judged as drifting (camera_drift.py) and what the worker waits for;
- `/metrics` (unless WASTEX_METRICS is off): worker_metrics.py's figures, the consumer lag measured at each scrape.
"""

from __future__ import annotations

import faust

from infra.retry import Degradation
from infra.settings import Settings
from schemas.topics import IMAGES_CAPTURED
from stream_apps.metrics_page import serve_metrics
from stream_apps.scoring.camera_drift import DriftingCameras
from stream_apps.scoring.consumer_lag import partition_lags
from stream_apps.scoring.counting_agents import add_counting
from stream_apps.scoring.outcome_topics import OutcomeTopics
from stream_apps.scoring.scoring_agent import add_scoring
from stream_apps.scoring.worker_metrics import scoring_metrics
from stream_apps.stream_app import configured_stream_app


def create_app(settings: Settings, worker_name: str = "scoring-1", web_port: int | None = None) -> faust.App:
    app = configured_stream_app(
        settings, "scoring", worker_name, web_port or settings.scoring_web_port,
        topic_partitions=settings.image_partitions,
        table_standby_replicas=0,
        # A blocked loop stalls rebalances: keep what one poll and one stream buffer hold modest.
        broker_max_poll_records=2 * settings.scoring_batch_size,
        stream_buffer_maxsize=4 * settings.scoring_batch_size,
        # Count-table writes come one per image: batching them for a few ms spares the broker a request each.
        producer_linger=0.01,
    )
    degradation = Degradation()  # what this worker waits for (a store down): `/health/` says degraded and why
    outputs = OutcomeTopics(app, settings)
    metrics = scoring_metrics(settings)
    drifting = DriftingCameras()
    holder = add_scoring(app, settings, outputs, degradation, metrics, drifting)
    add_counting(app, settings, outputs, degradation)

    async def measure_lag() -> None:
        lags = await partition_lags(app.consumer, IMAGES_CAPTURED.full_name(settings.topic_prefix))
        if lags is not None:
            metrics.lag_measured(lags)

    serve_metrics(app, settings, "scoring", worker_name, before_scrape=measure_lag)

    @app.page("/health/")
    async def health_page(web, request):
        model = holder.current
        return web.json({"worker": worker_name, "model_version": model.version if model else None,
                         "model_digest": model.digest if model else None,
                         **(model.runtime_report() if model else {"runtime": None}),
                         "drifting_cameras": drifting.ids(), **degradation.report()})

    return app
