"""WSGI entry point: ``app`` is built in each worker after fork.

``gunicorn -c python:bleepstore.gunicorn_conf bleepstore.wsgi:app`` serves it from any
directory (what ``bleepstore serve`` execs).
"""

from bleepstore.app import create_app

app = create_app()
