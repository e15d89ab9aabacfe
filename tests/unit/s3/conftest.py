"""Hypothesis budget for the property tests of the pure protocol code.

Every property test runs with a fixed budget: ``max_examples`` is 100 unless a test sets
its own (listing, chunked and checksum tests ask for 200-400), and no per-example
deadline, because a wall-clock deadline only makes a slow CI machine fail at random.
``print_blob`` prints a ``@reproduce_failure`` line with any failure; the house rule
(design.md) is to paste the shrunk input as an ``@example`` or a plain test, so a crash
hypothesis found once stays a regular test (tests/unit/s3/test_ranges.py shows the form).
Set ``BLEEPSTORE_HYPOTHESIS_PROFILE=deep`` for a longer local hunt.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True)
settings.register_profile("deep", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("BLEEPSTORE_HYPOTHESIS_PROFILE", "ci"))
