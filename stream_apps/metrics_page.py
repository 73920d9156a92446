"""`/metrics` on a stream app's own web server, announced to the local Prometheus once the server is up.

The route is `/metrics` exactly, no trailing slash: that is the path Prometheus scrapes (and aiohttp, under Faust,
answers `/metrics/` with 404 rather than a redirect). With metrics off (WASTEX_METRICS=false) there is neither
route nor scrape target.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import faust
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from infra.scrape_targets import register_scrape_target
from infra.settings import Settings

PATH = "/metrics"
BeforeScrape = Callable[[], Awaitable[None]]


def serve_metrics(app: faust.App, settings: Settings, job: str, worker_name: str,
                  before_scrape: BeforeScrape | None = None, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve `registry` at `/metrics` (refreshing with `before_scrape` first) and register the worker as a target
    of `job`, instance `worker_name`."""
    if not settings.metrics_enabled:
        return

    @app.page(PATH)
    async def metrics_page(web, request):
        if before_scrape is not None:
            await before_scrape()
        # As a header: aiohttp refuses a charset inside its content_type argument.
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.task
    async def announce_metrics() -> None:
        # Tasks start after the app's services, its web server among them: `/metrics` answers by now.
        register_scrape_target(settings, job, worker_name, app.conf.web_port)
