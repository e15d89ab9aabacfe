"""Schema migrations (storage.md §2.1).

Invariants: migrations are append-only and numbered; every statement is idempotent
(``IF NOT EXISTS`` / ``INSERT OR IGNORE``) so an interrupted migration simply runs again;
each version is applied in its own ``BEGIN IMMEDIATE`` transaction with its
``schema_version`` row. A database newer than this build refuses to open.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

V1 = """
CREATE TABLE IF NOT EXISTS buckets (
  name TEXT PRIMARY KEY,
  region TEXT NOT NULL DEFAULT 'us-east-1',
  owner_id TEXT NOT NULL,
  owner_display TEXT NOT NULL DEFAULT '',
  acl TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_buckets_owner ON buckets (owner_id, name);

CREATE TABLE IF NOT EXISTS objects (
  bucket TEXT NOT NULL REFERENCES buckets(name) ON DELETE CASCADE,
  key TEXT NOT NULL,
  size INTEGER NOT NULL CHECK (size >= 0),
  etag TEXT NOT NULL,
  content_type TEXT NOT NULL DEFAULT 'application/octet-stream',
  content_encoding TEXT, content_language TEXT, content_disposition TEXT,
  cache_control TEXT, expires TEXT,
  storage_class TEXT NOT NULL DEFAULT 'STANDARD',
  acl TEXT NOT NULL DEFAULT '{}',
  user_metadata TEXT NOT NULL DEFAULT '{}',
  last_modified TEXT NOT NULL,
  delete_marker INTEGER NOT NULL DEFAULT 0,
  data_ref TEXT NOT NULL,
  data_node TEXT,
  parts_count INTEGER,
  checksum_algorithm TEXT,
  checksum_value TEXT,
  PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_objects_data_ref ON objects (data_ref);

CREATE TABLE IF NOT EXISTS multipart_uploads (
  upload_id TEXT PRIMARY KEY,
  bucket TEXT NOT NULL REFERENCES buckets(name) ON DELETE CASCADE,
  key TEXT NOT NULL,
  content_type TEXT NOT NULL DEFAULT 'application/octet-stream',
  content_encoding TEXT, content_language TEXT, content_disposition TEXT,
  cache_control TEXT, expires TEXT,
  storage_class TEXT NOT NULL DEFAULT 'STANDARD',
  acl TEXT NOT NULL DEFAULT '{}',
  user_metadata TEXT NOT NULL DEFAULT '{}',
  owner_id TEXT NOT NULL,
  owner_display TEXT NOT NULL DEFAULT '',
  initiated_at TEXT NOT NULL,
  checksum_algorithm TEXT,
  data_ref TEXT,
  backend_ref TEXT
);
CREATE INDEX IF NOT EXISTS idx_uploads_bucket_key
  ON multipart_uploads (bucket, key, initiated_at, upload_id);
CREATE INDEX IF NOT EXISTS idx_uploads_initiated ON multipart_uploads (initiated_at);

CREATE TABLE IF NOT EXISTS multipart_parts (
  upload_id TEXT NOT NULL REFERENCES multipart_uploads(upload_id) ON DELETE CASCADE,
  part_number INTEGER NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
  size INTEGER NOT NULL,
  etag TEXT NOT NULL,
  last_modified TEXT NOT NULL,
  data_ref TEXT NOT NULL,
  data_node TEXT,
  checksum_value TEXT,
  backend_ref TEXT,
  PRIMARY KEY (upload_id, part_number)
);
CREATE INDEX IF NOT EXISTS idx_parts_data_ref ON multipart_parts (data_ref);

-- [BS] byte windows of the parts of a completed multipart blob, for partNumber reads;
-- keyed by the immutable blob, dropped with it by GC.
CREATE TABLE IF NOT EXISTS blob_parts (
  data_ref TEXT NOT NULL,
  part_number INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  size INTEGER NOT NULL,
  PRIMARY KEY (data_ref, part_number)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS credentials (
  access_key_id TEXT PRIMARY KEY,
  secret_key TEXT NOT NULL,
  owner_id TEXT NOT NULL,
  display_name TEXT NOT NULL DEFAULT '',
  active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0,1)),
  created_at TEXT NOT NULL,
  description TEXT
);

CREATE TABLE IF NOT EXISTS completed_uploads (
  upload_id TEXT PRIMARY KEY,
  bucket TEXT NOT NULL,
  key TEXT NOT NULL,
  etag TEXT NOT NULL,
  size INTEGER NOT NULL,
  completed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_completed_at ON completed_uploads (completed_at);

CREATE TABLE IF NOT EXISTS stats (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  bucket_count INTEGER NOT NULL DEFAULT 0,
  object_count INTEGER NOT NULL DEFAULT 0,
  total_bytes INTEGER NOT NULL DEFAULT 0,
  upload_count INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO stats (id) VALUES (1);

CREATE TABLE IF NOT EXISTS blob_gc (
  data_ref TEXT PRIMARY KEY,
  reason TEXT NOT NULL CHECK (reason IN
    ('replaced','deleted','aborted','completed','expired','failed')),
  not_before TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_blob_gc_due ON blob_gc (not_before);

CREATE TABLE IF NOT EXISTS node_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
  name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TEXT NOT NULL
);
"""

# A one-row counter bumped by apply() in the transaction of every credential change, so
# every worker's credential cache notices a revocation on its next lookup (auth.md §9).
V2 = """
CREATE TABLE IF NOT EXISTS credential_generation (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  value INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO credential_generation (id) VALUES (1);
"""

# The ref a gateway reserves for an upload's result (AWS passthrough, Azure blocks) is
# looked up by the orphan scan for every blob it lists.
V3 = """
CREATE INDEX IF NOT EXISTS idx_uploads_data_ref ON multipart_uploads (data_ref)
  WHERE data_ref IS NOT NULL;
"""

# The transactional outbox (events.md §4): a row per event, written in the transaction of
# the change it describes, deleted once the broker confirmed it.
V4 = """
CREATE TABLE IF NOT EXISTS event_outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT UNIQUE NOT NULL,
  event_type TEXT NOT NULL,
  partition_key TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at TEXT NOT NULL,
  claimed_by TEXT,
  claimed_until TEXT
);
CREATE INDEX IF NOT EXISTS idx_outbox_due ON event_outbox (next_attempt_at, seq);
"""

# Write tasks (events.md §5.2): the sync / async write modes, node-local.
V5 = """
CREATE TABLE IF NOT EXISTS write_tasks (
  task_id TEXT PRIMARY KEY,
  operation TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending','running','done','failed','dead')),
  published INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL,
  max_retries INTEGER NOT NULL,
  payload TEXT NOT NULL,
  data_ref TEXT,
  request_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  last_error TEXT,
  result TEXT
);
CREATE INDEX IF NOT EXISTS idx_write_tasks_state ON write_tasks (state, updated_at);
"""

# The checksum type an upload was created with (x-amz-checksum-type: COMPOSITE or
# FULL_OBJECT); NULL for uploads created before it, read as the algorithm's default.
# NOTE: ALTER TABLE has no IF NOT EXISTS; the version still cannot half-apply, because
# SQLite DDL is transactional and the version runs in one transaction with its row.
V6 = """
ALTER TABLE multipart_uploads ADD COLUMN checksum_type TEXT
"""

# Cluster mode (cluster.md §3): the index of the last Raft entry applied to this replica
# (the guard that makes journal replay and snapshot reinstalls exactly-once) and the
# members. Both are replicated tables; in embedded mode they stay at their defaults.
V7 = """
CREATE TABLE IF NOT EXISTS raft_applied (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  applied_index INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO raft_applied (id) VALUES (1);
CREATE TABLE IF NOT EXISTS cluster_nodes (
  node_id TEXT PRIMARY KEY,
  raft_addr TEXT NOT NULL UNIQUE,
  api_addr TEXT NOT NULL DEFAULT '',
  added_at TEXT NOT NULL
)
"""

# Bucket versioning (docs/decisions.md, Versioning): ``objects`` keeps exactly the current
# version of each key (so plain listings and reads are unchanged); every older version and
# every delete marker lives in ``object_versions``, ordered within a key by ``vseq``, the
# value of the replicated version clock when it was written (a key's current row always has
# the largest). version_id NULL is the "null" version; vseq 0: written before versioning.
V8 = """
ALTER TABLE buckets ADD COLUMN versioning TEXT;
ALTER TABLE objects ADD COLUMN version_id TEXT;
ALTER TABLE objects ADD COLUMN vseq INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS object_versions (
  bucket TEXT NOT NULL REFERENCES buckets(name) ON DELETE CASCADE,
  key TEXT NOT NULL,
  vseq INTEGER NOT NULL,
  version_id TEXT,
  delete_marker INTEGER NOT NULL DEFAULT 0,
  size INTEGER NOT NULL CHECK (size >= 0),
  etag TEXT NOT NULL,
  content_type TEXT NOT NULL DEFAULT 'application/octet-stream',
  content_encoding TEXT, content_language TEXT, content_disposition TEXT,
  cache_control TEXT, expires TEXT,
  storage_class TEXT NOT NULL DEFAULT 'STANDARD',
  acl TEXT NOT NULL DEFAULT '{}',
  user_metadata TEXT NOT NULL DEFAULT '{}',
  last_modified TEXT NOT NULL,
  data_ref TEXT NOT NULL,
  parts_count INTEGER,
  checksum_algorithm TEXT,
  checksum_value TEXT,
  PRIMARY KEY (bucket, key, vseq DESC)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_versions_data_ref ON object_versions (data_ref);
CREATE TABLE IF NOT EXISTS version_clock (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  value INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO version_clock (id) VALUES (1)
"""

# Per-bucket configuration documents (policy, CORS, lifecycle, public access block, bucket
# tagging), one row per kind, dropped with the bucket; object tags (JSON [[key, value]...],
# NULL: none) on objects, their older versions and uploads (copied at Complete).
V9 = """
CREATE TABLE IF NOT EXISTS bucket_configs (
  bucket TEXT NOT NULL REFERENCES buckets(name) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  document TEXT NOT NULL,
  PRIMARY KEY (bucket, kind)
) WITHOUT ROWID;
ALTER TABLE objects ADD COLUMN tags TEXT;
ALTER TABLE object_versions ADD COLUMN tags TEXT;
ALTER TABLE multipart_uploads ADD COLUMN tags TEXT
"""

# Web console logins (web/console/): one row per session, keyed by the SHA-256 hex of the
# cookie's token (the token itself is never stored). A replicated table: a logout or a
# disabled user ends the session on every node.
V10 = """
CREATE TABLE IF NOT EXISTS console_sessions (
  token_hash TEXT PRIMARY KEY,
  access_key TEXT NOT NULL,
  csrf_token TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_console_sessions_expires ON console_sessions (expires_at);
CREATE INDEX IF NOT EXISTS idx_console_sessions_key ON console_sessions (access_key)
"""

# Small objects kept in the database (storage/inline.py): the bytes of each ``inline:``
# ref, written in the transaction that commits its object row and deleted in the one that
# drops the last row pointing at it. A table of its own, so listings never read a blob.
V11 = """
CREATE TABLE IF NOT EXISTS inline_blobs (
  data_ref TEXT PRIMARY KEY,
  data BLOB NOT NULL
)
"""

MIGRATIONS: tuple[str, ...] = (V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11)
LATEST = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer build (exit 3 at startup)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def current_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                 "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every missing migration; returns the number applied."""
    version = current_version(conn)
    if version > LATEST:
        raise SchemaTooNew(f"database schema {version} is newer than this build ({LATEST})")
    applied = 0
    for number in range(version + 1, LATEST + 1):
        script = MIGRATIONS[number - 1]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO schema_version VALUES (?, ?)", (number, _now()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied += 1
    return applied
