"""The Raft sidecar process: ``python -m bleepstore.cluster.sidecar --parent <pid>``
(cluster.md §1). The gunicorn master starts it after recovery, before forking workers.

Invariants:
- A fresh interpreter (never a fork of the master), the only process of the node with a
  SyncObj, and the only writer of the node's replicated tables.
- Dies with the master: PR_SET_PDEATHSIG, and a watch on the parent pid for the instant
  between the spawn and that call.
- Workers reach it on a Unix socket inside ``cluster.data_dir`` (mode 0700): one thread per
  worker connection, one frame in, one frame out.
- Once a leader is known it makes sure the replica holds the bootstrap credential and
  this node's row in ``cluster_nodes`` (every node proposes its own: joins need nothing
  more), and publishes the raft state to ``node_meta`` for the workers' headers and probes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from bleepstore.cluster.applier import Applier
from bleepstore.cluster.journal import KeptEntriesFilter
from bleepstore.cluster.node import (
    MetadataStateMachine,
    Peer,
    build_conf,
    peers_of,
    self_addr,
)
from bleepstore.cluster.service import Service
from bleepstore.config import Config, ConfigError, load
from bleepstore.metadata.codec import encode_command
from bleepstore.metadata.commands import PutCredential, PutNodeMeta
from bleepstore.metadata.replicated import STATE_KEY
from bleepstore.metadata.sidecar_link import FrameError, read_frame, write_frame
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Credential
from bleepstore.storage.owner import owner_of

log = logging.getLogger("bleepstore.cluster")

SOCKET_NAME = "sidecar.sock"
PR_SET_PDEATHSIG = 1
STATE_PERIOD_S = 0.25
RESTART_DELAY_S = 1.0


def socket_path(cfg: Config) -> str:
    path = str(Path(cfg.cluster.data_dir).resolve() / SOCKET_NAME)
    if len(path.encode()) > 100:  # sun_path holds 108 bytes
        raise ConfigError(f"cluster.data_dir: {path} is too long for a Unix socket path")
    return path


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the watch thread alone
        pass
    if os.getppid() != parent:
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        while True:
            try:
                request = read_frame(sock)
            except (OSError, FrameError, ValueError):
                return
            try:
                answer = self.server.service.handle(request)
            except Exception as exc:  # a bug in one op must not kill the link
                log.exception("sidecar op failed")
                answer = {"ok": False, "code": "internal_error", "message": str(exc)}
            try:
                write_frame(sock, answer)
            except OSError:
                return


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, service: Service) -> None:
        self.service = service
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        super().__init__(path, _Handler)
        os.chmod(path, 0o600)


class Sidecar:
    def __init__(self, cfg: Config, bootstrap: Credential) -> None:
        self.cfg, self.bootstrap = cfg, bootstrap
        cl = cfg.cluster
        self.store = SqliteStore(cfg.metadata.sqlite.path, synchronous="FULL",
                                 busy_timeout_ms=cfg.metadata.sqlite.busy_timeout_ms)
        if cfg.queue.enabled:
            from bleepstore.events.outbox import OutboxRecorder

            # NOTE: "drop" here whatever the policy: a refusal inside the apply would
            # roll the entry back on this node only (the replicas would diverge); "reject"
            # is enforced before proposing (ReplicatedStore.admit).
            self.store.recorder = OutboxRecorder(cl.node_id, cfg.queue.outbox_max_rows, "drop")
        self.store.migrate()
        self.applier = Applier(self.store, cl.node_id,
                               owner_of=owner_of if cl.data_placement == "owner" else None)
        self.peers = [p for p in peers_of(cl) if p.addr != self_addr(cl)]
        conf = build_conf(cl, self.applier)
        self.node = MetadataStateMachine(self_addr(cl), [p.addr for p in self.peers], conf,
                                         self.applier)
        # NOTE: this node is known by its id before its own AddNode is applied (the
        # leader header and status name it from the first heartbeat).
        me = Peer(cl.node_id, self_addr(cl), cl.api_addr)
        self.service = Service(self.node, self.store, cl.node_id, cl.cluster_id,
                               [me, *self.peers], cl.write_timeout_ms / 1000,
                               Path(cl.data_dir) / "raft.dump")
        self._published: str | None = None
        self._leader: str | None = None
        self._leader_changes = 0

    def serve(self) -> None:
        server = _Server(socket_path(self.cfg), self.service)
        threading.Thread(target=server.serve_forever, name="sidecar-socket",
                         daemon=True).start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        while not stop.wait(STATE_PERIOD_S):
            try:
                self._tend()
            except Exception:
                log.exception("raft sidecar housekeeping failed")
        server.shutdown()
        self.node.destroy()

    def _tend(self) -> None:
        st = self.service.handle({"op": "status"})
        if st["leader_addr"] != self._leader:
            self._leader = st["leader_addr"]
            self._leader_changes += 1
        published = json.dumps({**{k: st[k] for k in (
            "state", "term", "leader_id", "leader_addr", "has_quorum", "ready",
            "commit_index", "applied_index", "node_id")},
            "leader_changes": self._leader_changes,
            "applied_entries": self.applier.applied_entries,
            "apply_seconds": round(self.applier.apply_seconds, 6)}, sort_keys=True)
        if published != self._published:
            self.store.apply(PutNodeMeta(STATE_KEY, published))
            self._published = published
        if not self.service.registered and st["leader_addr"] is not None \
                and self.node.isReady():
            self.service.registered = self._bootstrap(st)

    def _bootstrap(self, st: dict[str, Any]) -> bool:
        cl, want = self.cfg.cluster, self.bootstrap
        have = self.store.get_credential(want.access_key_id)
        if have is None or (have.secret_key, have.owner_id, have.active) != \
                (want.secret_key, want.owner_id, want.active):
            answer = self.service.propose({"type": "Command",
                                           "cmd": encode_command(PutCredential(want))})
            if not answer.get("ok"):
                return False
        if not self._registered(cl.node_id):
            answer = self.service.propose({"type": "AddNode", "node_id": cl.node_id,
                                           "raft_addr": self_addr(cl), "api_addr": cl.api_addr})
            if not answer.get("ok"):
                return False
        if st["state"] == "leader" and not (Path(cl.data_dir) / "raft.dump").exists() \
                and self.store.stats().get("bucket_count", 0):
            # An embedded node converted to a cluster (§7.3): joiners need a snapshot.
            self.node.forceLogCompaction()
        return True

    def _registered(self, node_id: str) -> bool:
        row = self.store.conn().execute("SELECT 1 FROM cluster_nodes WHERE node_id = ?",
                                        (node_id,)).fetchone()
        return row is not None


def supervise() -> int:
    """Run the member in a child and start it again when it dies (an apply it could not
    trust exits 70: the restart replays the journal); SIGTERM stops both."""
    stopping = threading.Event()
    child: list[subprocess.Popen[bytes]] = []

    def stop(*_: Any) -> None:
        stopping.set()
        if child:
            child[0].terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping.is_set():
        child[:] = [subprocess.Popen([sys.executable, "-m", "bleepstore.cluster.sidecar",
                                      "--member", "--parent", str(os.getpid())])]
        code = child[0].wait()
        if not stopping.is_set():
            log.error("raft sidecar exited with %s; starting it again", code)
            stopping.wait(RESTART_DELAY_S)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bleepstore.cluster.sidecar")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--member", action="store_true",
                        help="run the Raft member itself (else: supervise one)")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    if not args.member:
        return supervise()
    from bleepstore.logs import setup_logging
    from bleepstore.recovery import bootstrap_credential

    cfg = load()
    setup_logging(cfg)
    logging.getLogger("pysyncobj.syncobj").addFilter(KeptEntriesFilter())
    sidecar = Sidecar(cfg, bootstrap_credential(cfg))
    log.info("raft sidecar started", extra={"node_id": cfg.cluster.node_id,
                                            "addr": self_addr(cfg.cluster)})
    sidecar.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
