"""Repository entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` (from the checkout;
installed, use ``bleepstore.wsgi:app``)."""

from bleepstore.wsgi import app

__all__ = ["app"]
