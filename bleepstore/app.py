"""create_app(): the one wiring point (design.md L5).

Invariants: called in each gunicorn worker after fork (``preload_app`` is off), so every
connection, client and thread it creates belongs to that worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from bleepstore import errors
from bleepstore.config import Config, load
from bleepstore.core.inline_storage import InlineStorage
from bleepstore.core.services import Services
from bleepstore.credentials import CredentialCache
from bleepstore.logs import setup_logging
from bleepstore.metadata.replicated import ReplicatedStore
from bleepstore.runtime import build_services, start_background, start_events
from bleepstore.storage.owner import INTERNAL_PATH, OwnerPlacement
from bleepstore.web.admin import add_admin_routes
from bleepstore.web.console import ConsoleHeaders, add_console_routes, session_validator
from bleepstore.web.docs import DocsResource, MetricsResource, OpenApiResource
from bleepstore.web.errors import handle_http_error, handle_s3_error, handle_unexpected
from bleepstore.web.front import S3Front
from bleepstore.web.metrics import Metrics
from bleepstore.web.observe import Observed
from bleepstore.web.probes import Health, Liveness, Readiness
from bleepstore.web.resources import S3Resource


class ObservableRequest(falcon.Request):
    """Exposes ``req.context`` in the environ for the access log / metrics layer."""

    def __init__(self, env: dict[str, Any], options: Any = None) -> None:
        super().__init__(env, options)
        env["bleepstore.context"] = self.context


def _queue_status(svc: Services) -> Callable[[], dict[str, Any]] | None:
    if not svc.config.queue.enabled:
        return None
    from bleepstore.events.status import queue_status

    backend = svc.config.queue.backend
    return lambda: queue_status(svc.store, backend)


def _add_service_routes(app: falcon.App[Any, Any], svc: Services, metrics: Metrics | None,
                        queue: Callable[[], dict[str, Any]] | None) -> Health:
    obs = svc.config.observability
    health = Health(svc)
    if queue is not None:
        health.extra_checks["queue"] = queue
    if isinstance(svc.store, ReplicatedStore):
        from bleepstore.web.cluster import cluster_check

        store = svc.store
        health.extra_checks["cluster"] = lambda: cluster_check(store)
        health.readiness_checks.append("cluster")
    app.add_route("/health", health)
    app.add_route("/healthz", Liveness(obs.health_check))
    app.add_route("/readyz", Readiness(health, obs.health_check))
    docs = DocsResource()
    app.add_route("/docs", docs)
    app.add_route("/docs/static/{name}", docs, suffix="static")
    app.add_route("/openapi.json", OpenApiResource())
    if metrics is not None:
        app.add_route("/metrics", MetricsResource(metrics, token=obs.metrics_token))
    return health


def create_app(config: Config | None = None, *, services: Services | None = None,
               background: bool = True) -> Any:
    """Build the WSGI application: Falcon app wrapped by the access-log/metrics layer."""
    cfg = config or load()
    setup_logging(cfg)
    svc = services or build_services(cfg)
    lookup = CredentialCache(svc.store.get_credential, svc.store.credential_generation,
                             cfg.auth.credential_cache_ttl_s)
    console = session_validator(svc, lookup) if cfg.console.enabled else None
    # NOTE: media_type=None: S3 sends Content-Type only when there is a body.
    middleware: list[Any] = [S3Front(cfg, lookup, bucket_config=svc.store.get_bucket_config,
                                     console_sessions=console)]
    if console is not None:
        middleware.append(ConsoleHeaders())
    if isinstance(svc.store, ReplicatedStore):
        from bleepstore.web.cluster import ClusterFront

        middleware.append(ClusterFront(svc.store, cfg.cluster.node_id))
    app = falcon.App(middleware=middleware,  # type: ignore[call-overload]
                     request_type=ObservableRequest, media_type=None, cors_enable=False)
    app.req_options.keep_blank_qs_values = True
    app.req_options.auto_parse_form_urlencoded = False
    app.req_options.strip_url_path_trailing_slash = False
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(errors.S3Error, handle_s3_error)
    s3 = S3Resource(svc)
    for shape in ("/", "/b", "/b/k"):
        app.add_route(shape, s3)
    metrics = Metrics(svc.store.stats) if cfg.observability.metrics else None
    if metrics is not None and isinstance(svc.store, ReplicatedStore):
        from bleepstore.web.cluster import RaftCollector

        metrics.add_collector(RaftCollector(svc.store))
    queue = _queue_status(svc)
    health = _add_service_routes(app, svc, metrics, queue)
    if console is not None:
        add_console_routes(app, svc, console, health=health, metrics=metrics, queue=queue)
    placement = svc.storage.backend if isinstance(svc.storage, InlineStorage) else svc.storage
    if isinstance(placement, OwnerPlacement):
        from bleepstore.web.cluster import InternalBlob

        app.add_route(INTERNAL_PATH, InternalBlob(placement, cfg.cluster.secret))
    if cfg.server.admin_port is not None:
        add_admin_routes(app, svc, queue)
    if background:
        start_background(svc)
        if cfg.queue.enabled:
            start_events(svc)
    return Observed(app, metrics, cfg.logging.access_log,
                    trusted_proxies=cfg.server.trusted_proxies)
