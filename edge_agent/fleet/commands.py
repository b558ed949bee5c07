"""Signed fleet commands: what an operator sends, how a gateway decides to obey it. Pure: no I/O,
the clock and the ids already seen are passed in.

On the wire a command is an envelope (JSON)::

    {"schema": "edge-agent/signed-command/1", "key_id": "<16-byte hex>",
     "signature": "<base64 ed25519>", "command": "<base64 of the command's JSON bytes>"}

The signature covers the exact bytes inside `command` (as a bundle's covers the exact bytes of
its manifest), so nothing is canonicalised and nothing outside those bytes is trusted. The
command itself::

    {"schema": "edge-agent/command/1", "id": "...", "issued_at": 1764650000.0,
     "expires_at": 1764653600.0, "target": {"site": "plant-*", "gateways": "gw-*"},
     "action": "deploy" | "rollback" | "status" | "config", "args": {...}}

Keys come from the same trust store as bundles (`bundles.trusted_keys`); `allow_unsigned` does
NOT extend to commands: a command is always signed by a trusted key or refused. The inner
`schema` separates the two uses of a key: signed manifest bytes never parse as a command.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import uuid
from collections.abc import Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from edge_agent.config import MAX_CONFIG_BYTES
from edge_agent.inference.bundle import BundleTrust, key_id

if TYPE_CHECKING:  # imported with the keys (see inference/bundle.py)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ENVELOPE_SCHEMA = "edge-agent/signed-command/1"
COMMAND_SCHEMA = "edge-agent/command/1"
# A config push carries a config (at most MAX_CONFIG_BYTES) as text, base64 inside the envelope:
# the envelope's bound leaves room for that and nothing much bigger is ever parsed.
MAX_COMMAND_BYTES = 2 * MAX_CONFIG_BYTES
# How far the operator's clock may be ahead of the gateway's (issued_at) and how long after
# expires_at a command is still taken (the gateway's clock may be behind).
DEFAULT_SKEW_S = 60.0
# A command may live at most this long: the replay memory keeps each id until its command
# expires, so this bounds how long an id is kept (and so the memory).
MAX_LIFETIME_S = 7 * 86_400.0
# Bundles travel in chunks of at most this size and at most this much in total.
MAX_CHUNK_BYTES = 256 * 1024
MAX_BUNDLE_BYTES = 64 * 1024 * 1024

CommandId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
# A glob (fnmatch: * ? [..]) over site or gateway names; no separators or control characters.
Pattern = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^/#+\s\x00-\x1f\x7f]+$")
]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def command_topics(prefix: str, site: str, gateway: str) -> tuple[str, str]:
    """(a gateway's command topic root, the fleet-wide one), each ending in `/cmd`. Commands go
    to `{root}/{action}`, a deploy's chunks to `{root}/chunk/{command_id}/{index}`."""
    p = prefix.rstrip("/")
    return f"{p}/{site}/{gateway}/cmd", f"{p}/fleet/cmd"


class CommandRefused(Exception):
    """A command not to obey; `reason` says why, `command_id` names it when it could be read."""

    def __init__(self, reason: str, command_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_id = command_id


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    """Which gateways a command is for: a site pattern, and a gateway pattern or an explicit
    list of `site/gateway` names (the operator's canary and the rest after it)."""

    site: Pattern = "*"
    gateways: Pattern | list[Annotated[str, StringConstraints(min_length=3, max_length=257)]] = "*"

    def matches(self, site: str, gateway: str) -> bool:
        if isinstance(self.gateways, list):
            return f"{site}/{gateway}" in self.gateways
        # fnmatchcase: a name's case is part of it (topics are case-sensitive).
        return fnmatch.fnmatchcase(site, self.site) and fnmatch.fnmatchcase(gateway, self.gateways)


class DeployArgs(_Strict):
    """A bundle for one asset, sent as `chunks` chunks (tar archive) of at most `chunk_bytes`
    each, `bytes` in all, whose sha256 is `sha256`."""

    asset: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    sha256: Sha256
    bytes: int = Field(gt=0, le=MAX_BUNDLE_BYTES)
    chunks: int = Field(ge=1)
    chunk_bytes: int = Field(gt=0, le=MAX_CHUNK_BYTES)
    model_version: Annotated[str, StringConstraints(max_length=256)] = ""

    @model_validator(mode="after")
    def _sizes(self) -> DeployArgs:
        if self.chunks != -(-self.bytes // self.chunk_bytes):
            raise ValueError(
                f"{self.chunks} chunks of {self.chunk_bytes} bytes cannot hold {self.bytes} bytes"
            )
        return self


class RollbackArgs(_Strict):
    asset: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class StatusArgs(_Strict):
    pass


class ConfigArgs(_Strict):
    # The whole config file (YAML text); validated by the gateway as `edge-agent validate` does.
    yaml: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONFIG_BYTES)]


Action = Literal["deploy", "rollback", "status", "config"]
ARGS: dict[str, type[_Strict]] = {
    "deploy": DeployArgs,
    "rollback": RollbackArgs,
    "status": StatusArgs,
    "config": ConfigArgs,
}


class Command(_Strict):
    schema_: Literal["edge-agent/command/1"] = Field(alias="schema")
    id: CommandId
    issued_at: float
    expires_at: float
    target: Target
    action: Action
    args: dict[str, Any] = {}

    @model_validator(mode="after")
    def _lifetime(self) -> Command:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be after issued_at")
        if self.expires_at - self.issued_at > MAX_LIFETIME_S:
            raise ValueError(f"lives longer than {MAX_LIFETIME_S:g} s")
        ARGS[self.action].model_validate(self.args)
        return self

    def parsed_args(self) -> Any:
        """The action's arguments as their model (DeployArgs, RollbackArgs, ...)."""
        return ARGS[self.action].model_validate(self.args)


def new_command_id() -> str:
    return uuid.uuid4().hex


def make_command(
    action: Action,
    args: dict[str, Any],
    target: Target,
    now: float,
    lifetime_s: float,
    command_id: str | None = None,
) -> Command:
    return Command.model_validate(
        {
            "schema": COMMAND_SCHEMA,
            "id": command_id or new_command_id(),
            "issued_at": now,
            "expires_at": now + lifetime_s,
            "target": target.model_dump(),
            "action": action,
            "args": args,
        }
    )


def sign_command(command: Command, key: Ed25519PrivateKey) -> bytes:
    """The envelope to publish."""
    body = command.model_dump_json(by_alias=True).encode()
    envelope = {
        "schema": ENVELOPE_SCHEMA,
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(key.sign(body)).decode("ascii"),
        "command": base64.b64encode(body).decode("ascii"),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Verified:
    command: Command
    key_id: str


def _peek_id(body: bytes) -> str | None:
    """The id of a command whose signature or content failed, for the refusal's report only
    (never trusted for anything else)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    cid = doc.get("id") if isinstance(doc, dict) else None
    return cid if isinstance(cid, str) and 0 < len(cid) <= 128 and cid.isprintable() else None


def verify_command(
    raw: bytes,
    trust: BundleTrust,
    now: float,
    seen: Container[str],
    skew_s: float = DEFAULT_SKEW_S,
) -> Verified:
    """Check, in this order, before anything is staged: size, envelope, signature by a trusted
    key over the command's bytes, the command's form, its time (issued no later than `now` +
    skew, not expired more than skew ago) and that its id is not in `seen`. Raises
    CommandRefused with the reason."""
    if len(raw) > MAX_COMMAND_BYTES:
        raise CommandRefused(f"command of {len(raw)} bytes exceeds {MAX_COMMAND_BYTES} bytes")
    try:
        env = json.loads(raw)
        if not isinstance(env, dict):
            raise ValueError("not a JSON object")
        if env.get("schema") != ENVELOPE_SCHEMA:
            raise ValueError(f"schema is {env.get('schema')!r}, not {ENVELOPE_SCHEMA}")
        kid, sig_b64, body_b64 = env["key_id"], env["signature"], env["command"]
        if not all(isinstance(v, str) for v in (kid, sig_b64, body_b64)):
            raise ValueError("key_id, signature and command must be strings")
        signature = base64.b64decode(sig_b64, validate=True)
        body = base64.b64decode(body_b64, validate=True)
    except KeyError as exc:
        raise CommandRefused(f"malformed command envelope: no {exc.args[0]}") from None
    except (ValueError, TypeError, binascii.Error) as exc:
        # Unsigned or garbled: there is no signature to check.
        raise CommandRefused(f"malformed command envelope (unsigned?): {exc}") from None
    cid = _peek_id(body)
    key = trust.keys.get(kid)
    if key is None:
        known = ", ".join(sorted(trust.keys)) or "none configured"
        raise CommandRefused(f"signed by unknown key {kid[:64]} (trusted keys: {known})", cid)
    from cryptography.exceptions import InvalidSignature  # loaded with the key already

    try:
        key.verify(signature, body)
    except InvalidSignature:
        raise CommandRefused(f"invalid signature by key {kid}", cid) from None
    try:
        command = Command.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise CommandRefused(f"malformed command: {where}: {first['msg']}", cid) from None
    if command.issued_at > now + skew_s:
        raise CommandRefused(
            f"issued {command.issued_at - now:.0f} s in the future of the gateway clock "
            f"(skew allowed {skew_s:g} s)",
            command.id,
        )
    if now > command.expires_at + skew_s:
        raise CommandRefused(
            f"expired {now - command.expires_at:.0f} s ago by the gateway clock", command.id
        )
    if command.id in seen:
        raise CommandRefused(f"replayed: command {command.id} was already taken", command.id)
    return Verified(command, kid)


# -- bundle transfer --------------------------------------------------------------------------


class TransferError(Exception):
    """A transfer that cannot complete (missing, out-of-order or oversized chunk, digest)."""


class Transfer:
    """The chunks of one deploy, in order, checked against the signed command's size, count and
    total sha256. Pure: the bytes are kept in memory (bounded by the command's `bytes`, itself
    at most MAX_BUNDLE_BYTES)."""

    def __init__(self, command_id: str, args: DeployArgs) -> None:
        self.command_id = command_id
        self.args = args
        self.next_index = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._hash = hashlib.sha256()

    @property
    def complete(self) -> bool:
        return self.next_index == self.args.chunks

    def add(self, index: int, data: bytes) -> bool:
        """Take chunk `index`; True once all are in and the digest matches. A chunk seen before
        (a QoS 1 redelivery) is ignored; a gap or an overrun raises TransferError."""
        a = self.args
        if index < self.next_index:
            return False
        if index >= a.chunks:
            raise TransferError(f"chunk {index} is beyond the {a.chunks} announced")
        if index > self.next_index:
            raise TransferError(
                f"chunk {index} arrived before chunk {self.next_index} (missing or out of order)"
            )
        last = index == a.chunks - 1
        want = a.bytes - a.chunk_bytes * (a.chunks - 1) if last else a.chunk_bytes
        if len(data) != want:
            raise TransferError(f"chunk {index} has {len(data)} bytes, expected {want}")
        self._parts.append(data)
        self._hash.update(data)
        self._size += len(data)
        self.next_index += 1
        if not last:
            return False
        digest = self._hash.hexdigest()
        if digest != a.sha256:
            raise TransferError(
                f"digest mismatch: received sha256 {digest[:12]}…, command says {a.sha256[:12]}…"
            )
        return True

    def data(self) -> bytes:
        return b"".join(self._parts)


def split_chunks(data: bytes, chunk_bytes: int) -> list[bytes]:
    return [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
