"""Per-worker runtime: building the backends from config and the maintenance loop.

Invariants: nothing here runs at import time; the maintenance loop is a daemon thread
that is safe to kill at any instant, and only the holder of the ``maintenance`` lease
row runs it on a node (storage.md §2.13) — no lock files.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bleepstore import errors
from bleepstore.config import Config, inline_limit
from bleepstore.core import gc, lifecycle
from bleepstore.core.inline_storage import InlineStorage
from bleepstore.core.integrity import scan_missing_blobs
from bleepstore.core.services import Services
from bleepstore.metadata.commands import PurgeCompletedUploads, PutNodeMeta, ReapExpiredUploads
from bleepstore.metadata.replicated import ReplicatedStore
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.s3.headers import iso_from_datetime
from bleepstore.storage.backend import StorageBackend
from bleepstore.storage.gateway import ComposeGateway, NativeGateway
from bleepstore.storage.local import LocalBackend

log = logging.getLogger("bleepstore.runtime")


def sqlite_store(cfg: Config) -> SqliteStore:
    """The node's SQLite file, written directly (embedded mode, recovery, node-local)."""
    sq = cfg.metadata.sqlite
    return SqliteStore(sq.path, synchronous=sq.synchronous, busy_timeout_ms=sq.busy_timeout_ms)


def build_store(cfg: Config) -> SqliteStore:
    """The node's metadata store: embedded, or a replica fed by the Raft sidecar."""
    sq = cfg.metadata.sqlite
    if cfg.metadata.engine != "raft":
        return sqlite_store(cfg)
    from bleepstore.cluster.sidecar import socket_path

    cl = cfg.cluster
    return ReplicatedStore(sq.path, socket_path=socket_path(cfg),
                           write_timeout_s=cl.write_timeout_ms / 1000,
                           read_consistency=cl.read_consistency, synchronous=sq.synchronous,
                           busy_timeout_ms=sq.busy_timeout_ms)


def build_services(cfg: Config) -> Services:
    store = build_store(cfg)
    if cfg.queue.enabled:
        from bleepstore.events.metrics import count_dropped
        from bleepstore.events.outbox import OutboxRecorder

        q = cfg.queue
        store.recorder = OutboxRecorder(node_id(cfg), q.outbox_max_rows, q.outbox_full_policy,
                                        on_drop=count_dropped)
        if isinstance(store, ReplicatedStore) and q.outbox_full_policy == "reject":
            store.admit = outbox_admission(store, q.outbox_max_rows)
    # Wrapped whatever the limit: objects kept inline stay readable after inlining is
    # turned off or the node is converted to a cluster (their rows are replicated).
    storage = InlineStorage(build_storage(cfg, store), store, inline_limit(cfg))
    return Services(store=store, storage=storage, config=cfg,
                    tasks=build_write_tasks(cfg, store))


def outbox_admission(store: SqliteStore, max_rows: int) -> Callable[[Any], None]:
    """Cluster mode, ``outbox_full_policy: reject``: a request's write is refused (503
    SlowDown) before it is proposed while this node's outbox is full."""
    from bleepstore.events.outbox import depth

    def admit(cmd: Any) -> None:
        if getattr(cmd, "origin", None) is not None and depth(store.conn()) >= max_rows:
            raise errors.SlowDown()

    return admit


def build_write_tasks(cfg: Config, store: SqliteStore) -> Any:
    """The sync / async write modes (events.md §5); None in write-through or direct mode."""
    q = cfg.queue
    if not q.enabled or q.consistency == "write-through":
        return None
    from bleepstore.core.write_tasks import WriteTasks
    from bleepstore.events.brokers import build_task_queue, task_retry
    from bleepstore.metadata.task_rows import TaskRows
    from bleepstore.storage.pending import PendingFiles

    node = node_id(cfg)
    return WriteTasks(q.consistency, node, TaskRows(store.conn), PendingFiles(q.pending_dir),
                      lambda: build_task_queue(q, node), task_retry(q)[0],
                      q.sync_timeout_ms / 1000)


def node_id(cfg: Config) -> str:
    """The event ``source`` and the node's task channel suffix (events.md §10)."""
    if cfg.metadata.engine == "raft":
        return cfg.cluster.node_id
    return cfg.queue.node_id or socket.gethostname()


def start_events(svc: Services) -> None:
    """The worker's outbox relay and, in sync / async mode, its task consumers."""
    start_relay(svc)
    if svc.tasks is not None:
        from bleepstore.core.task_consumer import TaskConsumer
        from bleepstore.events.brokers import task_retry

        q = svc.config.queue
        TaskConsumer(svc, q.consumer_threads, task_retry(q)[1]).start()


def start_relay(svc: Services) -> Any:
    """The worker's outbox relay (events/relay.py), woken by every commit of this worker."""
    from bleepstore.events.brokers import build_publisher
    from bleepstore.events.formats import render
    from bleepstore.events.outbox import Outbox, OutboxRow
    from bleepstore.events.publisher import BrokerHealth
    from bleepstore.events.relay import Relay
    from bleepstore.events.status import NODE_META_KEY, relay_state_json

    cfg, store = svc.config, svc.store
    node, fmt, region = node_id(cfg), cfg.queue.event_format, cfg.server.region

    def report(health: BrokerHealth) -> None:
        store.apply(PutNodeMeta(NODE_META_KEY, relay_state_json(health)))

    def rendered(row: OutboxRow) -> Any:
        return render(row, fmt, region)

    relay = Relay(Outbox(store.conn), store.take_lease, lambda: build_publisher(cfg.queue, node),
                  rendered, cfg.queue.outbox_batch_size, report=report)
    store.notify = relay.wake
    relay.start()
    return relay


def build_storage(cfg: Config, store: SqliteStore | None = None) -> StorageBackend:
    """The configured blob backend. Gateways import their SDK here, lazily, and open no
    connection until first used (after fork). A cluster node with owner placement reads
    its peers' blobs from them (their addresses from ``store``)."""
    st, cl = cfg.storage, cfg.cluster
    if st.backend == "local":
        local = LocalBackend(st.local.root_dir)
        if cfg.metadata.engine != "raft" or cl.data_placement != "owner" or store is None:
            return local
        from bleepstore.storage.owner import OwnerPlacement

        return OwnerPlacement(local, cl.node_id, store.node_api_addr, cl.secret)
    if st.backend == "aws":
        from bleepstore.storage.aws import AwsCloud

        return NativeGateway(AwsCloud(st.aws), st.aws.prefix, st.spool_dir)
    if st.backend == "azure":
        from bleepstore.storage.azure import AzureCloud

        return NativeGateway(AzureCloud(st.azure), st.azure.prefix, st.spool_dir)
    from bleepstore.storage.gcs import GcsCloud

    return ComposeGateway(GcsCloud(st.gcp), st.gcp.prefix, st.spool_dir)


def _ago(seconds: int) -> str:
    return iso_from_datetime(datetime.now(UTC) - timedelta(seconds=seconds))


def reap_and_sweep(svc: Services) -> dict[str, int]:
    """One maintenance pass: TTL-reap uploads, purge old completions, sweep GC."""
    st = svc.config.storage
    reaped = len(svc.store.apply(ReapExpiredUploads(_ago(st.multipart_ttl_s),
                                                    svc.gc_not_before())))
    purged = svc.store.apply(PurgeCompletedUploads(_ago(st.completed_upload_retention_s)))
    swept = gc.sweep(svc)
    counts = {"uploads_reaped": reaped, "completed_purged": purged, "blobs_collected": swept}
    if svc.tasks is not None:
        retention = 3600 * svc.config.queue.task_retention_h
        counts["tasks_purged"] = svc.tasks.rows.purge(_ago(retention))
    return counts


def lifecycle_runs_here(store: SqliteStore) -> bool:
    """Lifecycle deletions are decided on one node: any node in embedded mode, the Raft
    leader in cluster mode (two nodes expiring one version would add two delete markers)."""
    return not isinstance(store, ReplicatedStore) or \
        store.cluster_state().get("state") == "leader"


def _lease_keeper(svc: Services, holder: str, seconds: float) -> Callable[[], bool]:
    """For a long pass: renews the maintenance lease when a third of it has gone by; False
    once another worker holds it (the pass then stops)."""
    renewed = time.monotonic()

    def keep() -> bool:
        nonlocal renewed
        if time.monotonic() - renewed < seconds / 3:
            return True
        renewed = time.monotonic()
        return svc.store.take_lease("maintenance", holder, seconds)

    return keep


def _maintenance_loop(svc: Services, stop: threading.Event) -> None:
    interval = max(1, svc.config.storage.maintenance_interval_s)
    lifecycle_interval = max(1, svc.config.lifecycle.interval_s)
    tick = min(interval, lifecycle_interval)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    logged: set[str] = set()  # missing-blob refs already logged at ERROR by this process
    next_maintenance, next_lifecycle = time.monotonic() + interval, 0.0
    while not stop.wait(tick):
        try:
            if not svc.store.take_lease("maintenance", holder, 3 * tick):
                continue
            soon = time.monotonic() + tick / 2  # each job runs at the tick nearest its time
            if soon >= next_maintenance:
                next_maintenance = time.monotonic() + interval
                counts = reap_and_sweep(svc)
                counts["missing_blobs"] = scan_missing_blobs(svc, logged)
                if any(counts.values()):
                    log.info("maintenance pass", extra=counts)
            if soon >= next_lifecycle and lifecycle_runs_here(svc.store):
                next_lifecycle = time.monotonic() + lifecycle_interval
                counts = lifecycle.run_pass(svc, _lease_keeper(svc, holder, 3 * tick))
                if any(counts.values()):
                    log.info("lifecycle pass", extra=counts)
        except Exception:  # keep the loop alive; the next pass retries
            log.exception("maintenance pass failed")


def start_background(svc: Services) -> threading.Event:
    stop = threading.Event()
    thread = threading.Thread(target=_maintenance_loop, args=(svc, stop),
                              name="bleepstore-maintenance", daemon=True)
    thread.start()
    return stop
