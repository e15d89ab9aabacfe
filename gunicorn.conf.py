"""Repository gunicorn config: every setting and hook lives in bleepstore.gunicorn_conf.

From a checkout: ``gunicorn -c gunicorn.conf.py wsgi:app``; anywhere the package is
installed: ``gunicorn -c python:bleepstore.gunicorn_conf bleepstore.wsgi:app``.
"""

from bleepstore.gunicorn_conf import *  # noqa: F401,F403
from bleepstore.gunicorn_conf import (  # noqa: F401
    child_exit,
    on_exit,
    on_starting,
    post_fork,
    pre_fork,
    when_ready,
    worker_int,
)
