"""User administration in the console (the bootstrap key only): the same commands as the
admin API and the CLI (``PutCredential`` / ``DeleteCredential``), so the same rules hold.

Invariants: a secret appears only in the response that creates it; the bootstrap user
(``auth.access_key``) is never disabled or removed (recovery would recreate it); a user
who owns buckets is not removed (409 with the buckets); disabling or removing a user ends
their console sessions in the same transaction (metadata/apply.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import falcon

from bleepstore.core.services import Services
from bleepstore.credentials import new_credential
from bleepstore.metadata.commands import DeleteCredential, PutCredential, UserOwnsBuckets
from bleepstore.model import Credential
from bleepstore.web.console.api import is_utf8
from bleepstore.web.console.guard import ConsoleGuard
from bleepstore.web.console.responses import ConsoleError, bad_request, json_body, send_json

MAX_DISPLAY_NAME = 256


def public_user(c: Credential) -> dict[str, Any]:
    return {"access_key": c.access_key_id, "display_name": c.display_name,
            "active": c.active, "created": c.created_at}


def _display_name(body: dict[str, Any]) -> str | None:
    name = body.get("display_name")
    if name is None or name == "":
        return None
    if (not isinstance(name, str) or len(name) > MAX_DISPLAY_NAME or not is_utf8(name)
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)):
        raise bad_request(f"display_name must be text of at most {MAX_DISPLAY_NAME} "
                          "characters, without control characters.")
    return name


class Users:
    def __init__(self, svc: Services, guard: ConsoleGuard) -> None:
        self.svc, self.guard = svc, guard

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.guard.admin(req, change=False)
        users = [public_user(c) for c in self.svc.store.list_credentials()]
        send_json(resp, 200, {"users": users})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.guard.admin(req, change=True)
        cred = new_credential(_display_name(json_body(req)))
        self.svc.store.apply(PutCredential(cred))
        send_json(resp, 201, {"access_key": cred.access_key_id, "secret_key": cred.secret_key,
                              "display_name": cred.display_name})


class UserItem:
    def __init__(self, svc: Services, guard: ConsoleGuard) -> None:
        self.svc, self.guard = svc, guard

    def _existing(self, key: str) -> Credential:
        cred = self.svc.store.get_credential(key)
        if cred is None:
            raise ConsoleError(404, "no_such_user", f"There is no user {key}.")
        return cred

    def _not_bootstrap(self, key: str, action: str) -> None:
        if key == self.svc.config.auth.access_key:
            raise ConsoleError(409, "bootstrap_user",
                               f"{key} is the bootstrap user (auth.access_key) and cannot be "
                               f"{action}; change the configuration and restart instead.")

    def on_patch(self, req: falcon.Request, resp: falcon.Response, access_key: str) -> None:
        self.guard.admin(req, change=True)
        active = json_body(req).get("active")
        if not isinstance(active, bool):
            raise bad_request("active must be true or false.")
        cred = self._existing(access_key)
        if not active:
            self._not_bootstrap(access_key, "disabled")
        updated = replace(cred, active=active)
        self.svc.store.apply(PutCredential(updated))
        send_json(resp, 200, public_user(updated))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, access_key: str) -> None:
        self.guard.admin(req, change=True)
        self._existing(access_key)
        self._not_bootstrap(access_key, "removed")
        try:
            removed = self.svc.store.apply(DeleteCredential(access_key))
        except UserOwnsBuckets as exc:
            raise ConsoleError(409, "owns_buckets",
                               f"{access_key} still owns buckets; delete them first.",
                               buckets=list(exc.buckets)) from None
        if not removed:
            raise ConsoleError(404, "no_such_user", f"There is no user {access_key}.")
        resp.status = falcon.HTTP_204
