"""WSGI entry point: ``app`` is built in each worker after fork."""

from bleepstore.app import create_app

app = create_app()
