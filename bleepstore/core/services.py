"""What every core operation needs: the metadata store, the blob backend, config.

Invariants: built once per worker by ``app.create_app``; holds no per-request state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bleepstore.config import Config
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.s3.headers import iso_from_datetime
from bleepstore.storage.backend import StorageBackend

if TYPE_CHECKING:
    from bleepstore.core.write_tasks import WriteTasks


@dataclass(frozen=True)
class Services:
    store: SqliteStore
    storage: StorageBackend
    config: Config
    tasks: WriteTasks | None = None  # queue.consistency sync / async (events.md §5)

    def gc_not_before(self) -> str:
        delay = self.config.storage.effective_gc_grace_s
        return iso_from_datetime(datetime.now(UTC) + timedelta(seconds=delay))

    def display_name(self, owner_id: str) -> str | None:
        return self.store.display_name_for(owner_id)
