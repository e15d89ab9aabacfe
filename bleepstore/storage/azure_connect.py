"""The Azure gateway's connection (``storage/azure.py``): the SDK client built on first
use, its credential, the SAS a Put Block From URL source carries, and the one place an
SDK error gets its S3 meaning (storage.md §4.1).

Invariants:
- azure-storage-blob and azure-identity are imported inside methods only, and the client
  is built on first use under a lock, never in ``__init__``: the gunicorn master
  constructs, the workers fork, then connect; the worker's threads share one client.
- ``translated`` lets no SDK exception through: each becomes ``BlobMissing``,
  ``SlowDown``, ``ServiceUnavailable``, ``InternalError`` or ``GatewayError`` (one ERROR
  log line naming the config key to check).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bleepstore import errors
from bleepstore.config import AzureStorageConfig
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.cloud import GatewayError

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

log = logging.getLogger("bleepstore.storage")

SAS_LIFETIME = timedelta(hours=1)


class Unsupported(Exception):
    """The service does not implement Put Block From URL (Azurite before 3.37)."""


def error_code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def error_status(exc: BaseException) -> int:
    return int(getattr(exc, "status_code", None) or 0)


class AzureConnection:
    """One container's client, with the SDK ``options`` (transfer sizes, retries)."""

    def __init__(self, config: AzureStorageConfig, options: dict[str, Any]) -> None:
        self.config = config
        self._options = options
        self._lock = threading.Lock()
        self._service: BlobServiceClient | None = None
        self._container: ContainerClient | None = None
        self._delegation: tuple[Any, datetime] | None = None

    def blob(self, name: str) -> BlobClient:
        return self.container().get_blob_client(name)

    def container(self) -> ContainerClient:
        container = self._container
        if container is None:
            with self._lock:
                if self._container is None:
                    self._container = self._connect()
                container = self._container
        return container

    # --- source authorization for Put Block From URL --------------------------------------

    def source_url(self, name: str) -> str:
        """The source must carry its own authorization: a read-only SAS signed with the
        account key, or a user delegation SAS for Entra ID credentials."""
        url = str(self.blob(name).url)
        if "?" in url:  # the connection string carried a SAS: it applies to the source
            return url
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        service = self._service
        assert service is not None  # blob() connected
        expiry = datetime.now(UTC) + SAS_LIFETIME
        key = getattr(service.credential, "account_key", None)
        with self.translated(name):
            sas = generate_blob_sas(
                service.account_name or "", self.config.container, name,
                account_key=key, user_delegation_key=None if key else self._delegation_key(),
                permission=BlobSasPermissions(read=True), expiry=expiry)
        return f"{url}?{sas}"

    def _delegation_key(self) -> Any:
        now = datetime.now(UTC)
        with self._lock:
            if self._delegation is None or self._delegation[1] - now < 2 * SAS_LIFETIME:
                assert self._service is not None
                until = now + 6 * SAS_LIFETIME
                key = self._service.get_user_delegation_key(now - timedelta(minutes=5), until)
                self._delegation = (key, until)
            return self._delegation[0]

    # --- the client -----------------------------------------------------------------------

    def _connect(self) -> ContainerClient:
        from azure.storage.blob import BlobServiceClient

        cfg = self.config
        if not cfg.container:
            raise self.refused("storage.azure.container", "is empty")
        try:
            if cfg.connection_string:
                service = BlobServiceClient.from_connection_string(cfg.connection_string,
                                                                   **self._options)
            elif cfg.account:
                service = BlobServiceClient(f"https://{cfg.account}.blob.core.windows.net",
                                            credential=self._credential(), **self._options)
            else:
                raise self.refused("storage.azure.connection_string",
                                   "neither it nor storage.azure.account is set")
        except ValueError as exc:
            raise self.refused(self._credential_key(), str(exc)) from None
        # NOTE: the SDK logs every request and response at INFO; at BleepStore's default
        # level that would be two lines per blob operation. Quieted unless configured.
        http_log = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
        if http_log.level == logging.NOTSET:
            http_log.setLevel(logging.WARNING)
        self._service = service
        return service.get_container_client(cfg.container)

    def _credential(self) -> Any:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        if self.config.use_managed_identity:  # AZURE_CLIENT_ID picks a user-assigned one
            return ManagedIdentityCredential(client_id=os.environ.get("AZURE_CLIENT_ID"))
        return DefaultAzureCredential()

    def _credential_key(self) -> str:
        if self.config.connection_string:
            return "storage.azure.connection_string"
        if self.config.use_managed_identity:
            return "storage.azure.use_managed_identity"
        return "storage.azure.account"

    # --- errors ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def translated(self, name: str) -> Iterator[None]:
        try:
            yield
        except (BlobMissing, errors.S3Error, Unsupported):
            raise
        except Exception as exc:
            mapped = self._translate(exc, name)
            if mapped is None:
                raise
            raise mapped from exc

    def _translate(self, exc: Exception, name: str) -> Exception | None:
        """storage.md §4.1: the S3-side meaning of an SDK error (None: not an SDK error)."""
        from azure.core import exceptions as az

        if not isinstance(exc, az.AzureError):
            return None
        status, code = error_status(exc), error_code(exc)
        detail = f"{code or status or type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        if code == "ContainerNotFound":
            return self.refused("storage.azure.container",
                                f"container {self.config.container!r} does not exist")
        if isinstance(exc, az.ClientAuthenticationError) or status in (401, 403):
            if code == "CannotVerifyCopySource":  # the source's SAS was refused
                return self.refused(self._credential_key(), f"copy source refused ({detail})")
            return self.refused(self._credential_key(), detail)
        if isinstance(exc, az.ResourceNotFoundError) or status == 404:
            return BlobMissing(name)
        if status == 429 or (status == 503 and code == "ServerBusy"):
            log.warning("azure throttled a request on %s: %s", name, detail)
            return errors.SlowDown()
        if (isinstance(exc, (az.ServiceRequestError, az.ServiceResponseError,
                             az.IncompleteReadError)) or status >= 500):
            log.warning("azure unavailable for %s: %s", name, detail)
            return errors.ServiceUnavailable()
        log.error("azure error on %s: %s", name, detail)
        return errors.InternalError()

    def refused(self, key: str, detail: str) -> GatewayError:
        log.error("azure storage refused BleepStore: check %s: %s", key, detail)
        return GatewayError(f"Azure storage refused BleepStore: check {key}: {detail}")
