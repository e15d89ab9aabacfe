"""In-process fixtures for tests/wsgi (see support/wsgiapp.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.wsgiapp import S3App, make_app


@pytest.fixture
def s3app(tmp_path: Path) -> S3App:
    return make_app(tmp_path)
