"""The gateway backends the test suite runs against their real emulators (the contract
suite and the whole end-to-end suite, each once per gateway)."""

from __future__ import annotations

GATEWAYS: list[str] = ["aws", "gcs", "azure"]
