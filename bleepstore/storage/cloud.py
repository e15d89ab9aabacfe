"""What a cloud adapter (``aws.py``, ``gcs.py``, ``azure.py``) offers the gateway backend
(``gateway.py``), and the one error it raises for a refusal of BleepStore itself.

Invariants: names are full cloud object names (prefix included); an adapter raises only
``BlobMissing``, an ``S3Error`` or ``GatewayError``, never an SDK exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from bleepstore import errors


class GatewayError(errors.InternalError):
    """The cloud refused BleepStore itself (credentials, permissions, configuration).

    The client sees a plain InternalError; ``detail`` (the setting to check and the cloud's
    own error) is for the operator only: the log line and the refused start."""

    def __init__(self, detail: str) -> None:
        super().__init__()
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class CloudStore(Protocol):
    """What one cloud must offer; names are full object names (prefix included)."""

    def upload_file(self, name: str, path: str, size: int) -> None:
        """Store the file at ``path`` as ``name`` (managed/resumable transfer)."""

    def read(self, name: str, offset: int, length: int) -> Iterator[bytes]:
        """Stream ``length`` bytes from ``offset``; BlobMissing if ``name`` is absent."""

    def size(self, name: str) -> int:
        """BlobMissing if absent."""

    def delete(self, name: str) -> None:
        """Idempotent."""

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy of a whole object; BlobMissing if ``src`` is absent."""

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        """Every object name under ``prefix`` with its last-modified time (epoch s)."""

    def check(self) -> None:
        """Raise if the bucket/container cannot be used (missing, no access)."""


class ComposingStore(CloudStore, Protocol):
    """A cloud whose parts are objects of their own, composed at Complete (GCS)."""

    def compose(self, dst: str, sources: Sequence[str]) -> None:
        """``dst`` = the concatenation of ``sources`` in order, natively (GCS compose);
        may leave temporaries only under the sources' common ``multipart/<id>/``."""


class NativeStore(CloudStore, Protocol):
    """A cloud whose own multipart upload builds the result in place (S3 passthrough,
    Azure staged blocks). ``name`` is the upload's reserved result; ``attempt`` (32 hex)
    tells one upload of a part number from another; a part's returned handle is kept on
    its row (``backend_ref``) and given back to ``complete_upload``."""

    def start_upload(self, name: str) -> None: ...

    def upload_part(self, name: str, number: int, attempt: str, path: str, size: int,
                    md5_hex: str) -> str | None: ...

    def copy_part(self, name: str, number: int, attempt: str, src: str,
                  size: int) -> str | None: ...

    def complete_upload(self, name: str, parts: Sequence[NativePart]) -> None:
        """Build ``name`` from ``parts`` in order; InvalidPart when a part is not the one
        uploaded; NoSuchUpload when the upload is gone and ``name`` was not built."""

    def abort_upload(self, name: str) -> None:
        """Idempotent; never touches ``name`` once it is built."""

    def sweep_uploads(self, prefix: str, keep: Callable[[str], bool]) -> int:
        """Abort the native uploads under ``prefix`` whose result ``keep`` rejects."""


@dataclass(frozen=True)
class NativePart:
    number: int
    attempt: str
    size: int
    handle: str | None
