"""Repository gunicorn config: every setting and hook lives in bleepstore.gunicorn_conf."""

from bleepstore.gunicorn_conf import *  # noqa: F401,F403
from bleepstore.gunicorn_conf import child_exit, on_starting  # noqa: F401
