"""Repository entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from bleepstore.wsgi import app

__all__ = ["app"]
