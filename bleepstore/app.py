"""create_app(): the one wiring point (design.md L5).

Invariants: called in each gunicorn worker after fork (``preload_app`` is off), so every
connection, client and thread it creates belongs to that worker.
"""

from __future__ import annotations

import falcon

from bleepstore import errors
from bleepstore.config import Config, load
from bleepstore.core.services import Services
from bleepstore.credentials import CredentialCache
from bleepstore.logs import setup_logging
from bleepstore.runtime import build_services, start_background
from bleepstore.web.admin import add_admin_routes
from bleepstore.web.errors import handle_http_error, handle_s3_error, handle_unexpected
from bleepstore.web.front import S3Front
from bleepstore.web.probes import Health, Liveness, Readiness
from bleepstore.web.resources import S3Resource


def create_app(config: Config | None = None, *, services: Services | None = None,
               background: bool = True) -> falcon.App:
    cfg = config or load()
    setup_logging(cfg)
    svc = services or build_services(cfg)
    lookup = CredentialCache(svc.store.get_credential, cfg.auth.credential_cache_ttl_s)
    app = falcon.App(middleware=[S3Front(cfg, lookup)], cors_enable=False)
    app.req_options.keep_blank_qs_values = True
    app.req_options.auto_parse_form_urlencoded = False
    app.req_options.strip_url_path_trailing_slash = False
    app.resp_options.secure_cookies_by_default = False
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(errors.S3Error, handle_s3_error)
    s3 = S3Resource(svc)
    app.add_route("/", s3)
    app.add_route("/b", s3)
    app.add_route("/b/k", s3)
    health = Health(svc)
    enabled = cfg.observability.health_check
    app.add_route("/health", health)
    app.add_route("/healthz", Liveness(enabled))
    app.add_route("/readyz", Readiness(health, enabled))
    if cfg.server.admin_port is not None:
        add_admin_routes(app, svc)
    if background:
        start_background(svc)
    return app
