"""Config models of the OPC UA source (`type: opcua`) and the checks of the files its security
section names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge_agent.config_base import SourceConfigBase, StrictModel, check_readable, resolve_path


class DeadbandConfig(StrictModel):
    type: Literal["absolute", "percent"]
    value: float = Field(ge=0)


class OpcUaSecurityConfig(StrictModel):
    """Message security of an OPC UA source. Paths are relative to the config file.

    With a secure policy the agent needs its certificate and key (`edge-agent opcua-cert` makes
    them) and exactly one way to trust the server: `server_certificate` (pinned), `trust_dir`
    (trusted server or CA certificates, DER or PEM, read at every connect) or
    `accept_any_server_certificate: true` (insecure, logged as such)."""

    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None  # client certificate (DER or PEM)
    private_key: Path | None = None  # unencrypted, PEM or DER
    # Announced in CreateSession; default: the URI in the certificate's subjectAltName (must be
    # equal, else strict servers refuse with BadCertificateUriInvalid; `validate` checks it).
    application_uri: str | None = Field(None, min_length=1)
    application_name: str | None = Field(None, min_length=1)  # default: certificate's CN
    server_certificate: Path | None = None
    trust_dir: Path | None = None
    accept_any_server_certificate: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurityConfig:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("policy None goes with mode None, Basic256Sha256 with a signing mode")
        trust = [
            name
            for name, given in (
                ("server_certificate", self.server_certificate is not None),
                ("trust_dir", self.trust_dir is not None),
                ("accept_any_server_certificate", self.accept_any_server_certificate),
            )
            if given
        ]
        if self.policy == "None":
            if trust:
                raise ValueError(f"{', '.join(trust)}: only used with a secure policy")
            return self
        if self.certificate is None or self.private_key is None:
            raise ValueError(
                "a secure policy needs `certificate` and `private_key` "
                "(make them with `edge-agent opcua-cert`)"
            )
        if len(trust) != 1:
            raise ValueError(
                "a secure policy needs exactly one way to trust the server: "
                "server_certificate (pinned file), trust_dir (folder of trusted certificates) "
                "or accept_any_server_certificate: true (insecure)"
                + (f"; got {' and '.join(trust)}" if trust else "")
            )
        return self


class OpcUaConfig(SourceConfigBase):
    type: Literal["opcua"]
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    # subscribe: monitored items, the server reports changes; poll: read all nodes every interval.
    mode: Literal["subscribe", "poll"] = "subscribe"
    # Batches (snapshots of the latest values) are emitted on this schedule in both modes.
    poll_interval_s: float = Field(1.0, gt=0)
    sampling_interval_ms: float = Field(100.0, ge=0)
    publishing_interval_ms: float = Field(100.0, gt=0)
    queue_size: int = Field(1, ge=1, le=10_000)
    deadband: DeadbandConfig | None = None
    timeout_s: float = Field(2.0, gt=0)
    security: OpcUaSecurityConfig = OpcUaSecurityConfig()
    username: str | None = None
    password_file: Path | None = None
    strict: bool = False


def check_opcua_security(where: str, sec: OpcUaSecurityConfig, base: Path) -> list[str]:
    """The files an OPC UA security section names: readable, the key belongs to the certificate,
    the application URI is the certificate's (strict servers check it)."""
    if sec.certificate is None and sec.policy == "None":
        return []
    # Imported here: cryptography is only loaded for configs with OPC UA certificates.
    from edge_agent.sources.opcua.certs import CertificateError, FieldError, client_identity

    errors: list[str] = []
    try:
        client_identity(
            resolve_path(base, sec.certificate) if sec.certificate else None,
            resolve_path(base, sec.private_key) if sec.private_key else None,
            sec.application_uri,
            sec.application_name,
        )
    except FieldError as exc:
        errors.append(f"{where}.{exc.field}: {exc.message}")
    if sec.server_certificate is not None:
        from edge_agent.sources.opcua.certs import load_certificate

        try:
            load_certificate(resolve_path(base, sec.server_certificate))
        except CertificateError as exc:
            errors.append(f"{where}.server_certificate: {exc}")
    if sec.trust_dir is not None and not resolve_path(base, sec.trust_dir).is_dir():
        errors.append(f"{where}.trust_dir: {resolve_path(base, sec.trust_dir)} is not a folder")
    return errors


def check_sources(
    sources: Sequence[tuple[int, SourceConfigBase]], base_dir: Path | None
) -> list[str]:
    errors: list[str] = []
    if base_dir is None:
        return errors
    for i, src in sources:
        if isinstance(src, OpcUaConfig):
            errors.extend(check_opcua_security(f"sources[{i}].security", src.security, base_dir))
            if src.password_file is not None:
                path = resolve_path(base_dir, src.password_file)
                errors += check_readable(f"sources[{i}].password_file", path)
    return errors
