"""Agent configuration: pydantic-settings models, loaded from YAML and overridden by environment.

`EDGE_AGENT_UPSTREAM__MQTT__PORT=1884` overrides `upstream.mqtt.port`; environment wins over YAML.
Every error is reported with its field path (`sources[0].port: ...`); nothing is silently dropped
(unknown keys are errors, so a typo cannot turn into a default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from edge_agent.csvdata import signal_name
from edge_agent.inference.bundle import BundleTrust, SigningKeyError, key_id, load_public_key
from edge_agent.profiles import (
    PROFILE_TAGS,
    DeviceProfile,
    MqttProfile,
    OpcUaProfile,
    load_any_profile,
    packaged_profile_dirs,
    resolve_profile,
)

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# MQTT topic levels must not contain wildcards or separators.
TOPIC_LEVEL = r"^[^/#+\s]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Identity(_Strict):
    site: str = Field(pattern=TOPIC_LEVEL)
    gateway: str = Field(pattern=TOPIC_LEVEL)


class Backoff(_Strict):
    initial_s: float = Field(0.5, gt=0)
    max_s: float = Field(30.0, gt=0)
    jitter: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Backoff:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self


class ClockSkew(_Strict):
    """How far a reading's own timestamp may be from the gateway clock. A reading stamped further
    ahead or further behind is bad data (counted, reported, restamped at the gateway time) and
    never moves an asset's clock: one message stamped in 2100 must not stop an asset scoring."""

    max_ahead_s: float = Field(5.0, gt=0)
    # None: the largest `max_age_s` of the assets the source feeds (older data is stale anyway).
    max_behind_s: float | None = Field(None, gt=0)


class _SourceCommon(_Strict):
    # /healthz turns unhealthy when the source has delivered nothing for this long. None:
    # max(10 × its poll interval (or the shortest sample period of the assets it feeds), 30 s).
    stall_s: float | None = Field(None, gt=0)
    # Per-source clock skew limits; None: the agent-wide `clock` section.
    clock: ClockSkew | None = None


class ModbusTcpSource(_SourceCommon):
    type: Literal["modbus_tcp"]
    name: str = Field(pattern=NAME)
    host: str
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    profile: str
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(1.0, gt=0)
    # Registers that may be read in between two wanted ones to save a request.
    max_gap: int = Field(16, ge=0, le=124)
    # False for devices that reject reads spanning several points: one request per point.
    merge_reads: bool = True
    # At start-up, probe every point once; addresses the device rejects stop the agent (exit 2)
    # instead of being reported bad and retried.
    strict: bool = False
    backoff: Backoff = Backoff()


class ModbusRtuSource(_SourceCommon):
    """One device (unit id) on a serial line. Sources naming the same `serial_port` share the line
    and take turns; the line settings must then agree."""

    type: Literal["modbus_rtu"]
    name: str = Field(pattern=NAME)
    serial_port: str = Field(min_length=1, description="e.g. /dev/ttyUSB0")
    baudrate: int = Field(19200, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(1, ge=1, le=247)
    profile: str
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(0.5, gt=0)
    # Quiet time between two requests on the line; slow RS-485 converters need a few ms.
    inter_request_delay_s: float = Field(0.005, ge=0, le=1)
    max_gap: int = Field(16, ge=0, le=124)
    merge_reads: bool = True
    strict: bool = False
    backoff: Backoff = Backoff()


class Deadband(_Strict):
    type: Literal["absolute", "percent"]
    value: float = Field(ge=0)


class OpcUaSecurity(_Strict):
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
    def _consistent(self) -> OpcUaSecurity:
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


class OpcUaSource(_SourceCommon):
    type: Literal["opcua"]
    name: str = Field(pattern=NAME)
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    profile: str
    # subscribe: monitored items, the server reports changes; poll: read all nodes every interval.
    mode: Literal["subscribe", "poll"] = "subscribe"
    # Batches (snapshots of the latest values) are emitted on this schedule in both modes.
    poll_interval_s: float = Field(1.0, gt=0)
    sampling_interval_ms: float = Field(100.0, ge=0)
    publishing_interval_ms: float = Field(100.0, gt=0)
    queue_size: int = Field(1, ge=1, le=10_000)
    deadband: Deadband | None = None
    timeout_s: float = Field(2.0, gt=0)
    security: OpcUaSecurity = OpcUaSecurity()
    username: str | None = None
    password_file: Path | None = None
    strict: bool = False
    backoff: Backoff = Backoff()


class MqttInSource(_SourceCommon):
    """Consume readings that sensors/gateways publish to an MQTT broker."""

    type: Literal["mqtt"]
    name: str = Field(pattern=NAME)
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = None
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)
    profile: str
    backoff: Backoff = Backoff()


Source = Annotated[
    ModbusTcpSource | ModbusRtuSource | OpcUaSource | MqttInSource, Field(discriminator="type")
]


def _signal_name(value: object) -> object:
    return signal_name(value) if isinstance(value, str) else value


class SignalRef(_Strict):
    # Any text names a signal, mapped as CSV headers are (`csvdata.signal_name`): `Flow Rate [m3/h]`
    # and `Flow  Rate` are the signal `Flow Rate`, as in a historian export's header.
    name: Annotated[str, BeforeValidator(_signal_name), Field(min_length=1)]
    source: str
    point: str | None = None  # defaults to the signal name

    @property
    def point_name(self) -> str:
        return self.point or self.name


class Asset(_Strict):
    name: str = Field(pattern=TOPIC_LEVEL)
    sample_period_s: float = Field(gt=0)
    # A signal older than this at a grid instant makes the sample invalid (no window over it).
    max_age_s: float | None = Field(None, gt=0)
    window: int | None = Field(None, ge=2, le=100_000)
    hop: int | None = Field(None, ge=1)
    bundle: Path
    signals: list[SignalRef] = Field(min_length=1)
    # While an alert is active: an `updated` event on a severity change, at most this often.
    alert_update_interval_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _unique_signals(self) -> Asset:
        names = [s.name for s in self.signals]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate signal names: {', '.join(dup)}")
        return self

    @property
    def effective_max_age_s(self) -> float:
        return self.max_age_s if self.max_age_s is not None else 2.5 * self.sample_period_s


class Tls(_Strict):
    ca_file: Path  # CA bundle that signed the broker's certificate
    cert_file: Path | None = None  # client certificate (mutual TLS), with key_file
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> Tls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class Mqtt(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = None  # default: edge-agent-{site}-{gateway}
    topic_prefix: str = Field("edge", pattern=r"^[^#+\s]+$")
    # YAML reads `5` as a number and `3.1.1` as a string; both name a protocol version.
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(str)] = "5"
    qos: Literal[0, 1] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)
    # How long the broker keeps our session (MQTT 5 session expiry) while we are away.
    session_expiry_s: int = Field(86_400, ge=0)
    tls: Tls | None = None
    username: str | None = None
    # The password comes from exactly one place, never from the YAML itself: a file, a systemd
    # credential ($CREDENTIALS_DIRECTORY/<name>) or an environment variable (the default).
    password_file: Path | None = None
    password_credential: str | None = Field(None, pattern=NAME)
    password_env: str = Field("EDGE_AGENT_MQTT_PASSWORD", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    backoff: Backoff = Backoff()

    @model_validator(mode="after")
    def _one_password_source(self) -> Mqtt:
        if self.password_file is not None and self.password_credential is not None:
            raise ValueError("password_file and password_credential are exclusive")
        return self


class Outbox(_Strict):
    """Persistent upstream queue (SQLite, WAL). Bounds and drop order: docs/UPSTREAM.md."""

    dir: Path = Path("/var/lib/edge-agent")
    max_messages: int = Field(100_000, ge=100)
    max_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024)
    max_age_s: float = Field(7 * 86_400, gt=0)
    # A message that fails this many publish attempts (or is rejected) goes to the dead letters.
    max_attempts: int = Field(5, ge=1)
    max_message_bytes: int = Field(256 * 1024, ge=1024)
    # `normal`: durable across a crash or SIGKILL of the agent; `full`: also across power loss.
    synchronous: Literal["normal", "full"] = "normal"


class Telemetry(_Strict):
    """Optional QoS 0 score telemetry, rate-limited per asset; off by default."""

    enabled: bool = False
    interval_s: float = Field(10.0, ge=0.1)


class Upstream(_Strict):
    mqtt: Mqtt = Mqtt()
    outbox: Outbox = Outbox()
    telemetry: Telemetry = Telemetry()


class Bundles(_Strict):
    """Which model bundles the agent runs: those signed by one of `trusted_keys` (public keys,
    PEM, relative to the config file; `edge-agent keys` makes a pair). Unsigned bundles only with
    `allow_unsigned: true`, which is insecure (anyone who can write the bundle folder decides what
    raises an alert) and said so in the log, the `model_loaded` event and the status message.
    With neither, every bundle is refused as unsigned."""

    trusted_keys: list[Path] = []
    allow_unsigned: bool = False


class Logging(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Metrics(_Strict):
    """The HTTP endpoint for Prometheus (/metrics) and for health checks (/healthz, /readyz).
    Loopback by default: it is unauthenticated, so exposing it is a deliberate choice."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9810, ge=0, le=65535)  # 0: pick a free port (tests), logged


class Observability(_Strict):
    metrics: Metrics = Metrics()
    # The pipeline counts as stuck (no watchdog ping, /healthz 503) when batches wait in its
    # queue and none has been processed for this long.
    stall_s: float = Field(default=30.0, gt=0)
    # Repeated events of one type about one subject (data_quality raised/cleared over and over)
    # within this period are folded: the first goes out at once, the rest in one event at the
    # end of the period with `details.folded` (how many it stands for). 0: no folding.
    event_period_s: float = Field(default=60.0, ge=0)


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EDGE_AGENT_", env_nested_delimiter="__", extra="forbid"
    )

    identity: Identity
    sources: list[Source] = Field(min_length=1)
    assets: list[Asset] = Field(min_length=1)
    upstream: Upstream = Upstream()
    bundles: Bundles = Bundles()
    logging: Logging = Logging()
    observability: Observability = Observability()
    clock: ClockSkew = ClockSkew()
    profile_dirs: list[Path] = []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so it overrides the YAML file (passed in as init kwargs).
        return env_settings, init_settings

    @model_validator(mode="after")
    def _unique_names(self) -> AgentSettings:
        for what, names in (
            ("sources", [s.name for s in self.sources]),
            ("assets", [a.name for a in self.assets]),
        ):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what}: duplicate names: {', '.join(dup)}")
        return self


class ConfigError(Exception):
    """Invalid configuration; `errors` are lines of the form `field.path: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class LoadedConfig:
    settings: AgentSettings
    path: Path
    profiles: dict[str, DeviceProfile | OpcUaProfile | MqttProfile]  # by source name
    # The keys of `bundles.trusted_keys`, read and checked at load (a reload reads them again).
    bundle_trust: BundleTrust = field(default_factory=BundleTrust)

    def bundle_dir(self, asset: Asset) -> Path:
        return asset.bundle if asset.bundle.is_absolute() else self.path.parent / asset.bundle


def _loc_to_path(loc: tuple[int | str, ...], tags: set[str]) -> str:
    out = ""
    prev_was_index = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            prev_was_index = True
            continue
        # Discriminated unions add the tag value to the location; it is noise for a reader.
        if prev_was_index and part in tags:
            prev_was_index = False
            continue
        out += f".{part}" if out else part
        prev_was_index = False
    return out or "(root)"


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    tags = {"modbus_tcp", "modbus_rtu", "opcua", "mqtt", *PROFILE_TAGS}
    lines = []
    for err in exc.errors():
        path = _loc_to_path(tuple(err["loc"]), tags)
        if prefix:
            path = prefix if path == "(root)" else f"{prefix}.{path}"
        lines.append(f"{path}: {err['msg']}")
    return lines


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: top level must be a mapping, got {type(data).__name__}"])
    return data


_PROTOCOL_OF_SOURCE = {
    "modbus_tcp": "modbus",
    "modbus_rtu": "modbus",
    "opcua": "opcua",
    "mqtt": "mqtt",
}


def resolve_path(base: Path, p: Path) -> Path:
    """A path from the config, relative to the config file's folder unless absolute."""
    return p if p.is_absolute() else base / p


def check_opcua_security(where: str, sec: OpcUaSecurity, base: Path) -> list[str]:
    """The files an OPC UA security section names: readable, the key belongs to the certificate,
    the application URI is the certificate's (strict servers check it)."""
    if sec.certificate is None and sec.policy == "None":
        return []
    # Imported here: cryptography is only loaded for configs with OPC UA certificates.
    from edge_agent.sources.opcua_certs import CertificateError, FieldError, client_identity

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
        from edge_agent.sources.opcua_certs import load_certificate

        try:
            load_certificate(resolve_path(base, sec.server_certificate))
        except CertificateError as exc:
            errors.append(f"{where}.server_certificate: {exc}")
    if sec.trust_dir is not None and not resolve_path(base, sec.trust_dir).is_dir():
        errors.append(f"{where}.trust_dir: {resolve_path(base, sec.trust_dir)} is not a folder")
    return errors


def load_config(path: Path) -> LoadedConfig:
    """Parse, validate and cross-check a config file. Raises ConfigError listing every problem."""
    data = _read_yaml(path)
    try:
        settings = AgentSettings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None

    errors: list[str] = []
    search = [path.parent / d for d in settings.profile_dirs] + [
        path.parent / "firmware_configs",
        *packaged_profile_dirs(),
    ]
    profiles: dict[str, DeviceProfile | OpcUaProfile | MqttProfile] = {}
    for i, src in enumerate(settings.sources):
        try:
            loaded = load_any_profile(resolve_profile(src.profile, search))
            wanted = _PROTOCOL_OF_SOURCE[src.type]
            if loaded.protocol != wanted:
                errors.append(
                    f"sources[{i}].profile: {src.profile!r} is a {loaded.protocol} profile; "
                    f"a {src.type} source needs a {wanted} profile"
                )
                continue
            profiles[src.name] = loaded
        except FileNotFoundError as exc:
            errors.append(f"sources[{i}].profile: {exc}")
        except ValidationError as exc:
            errors.extend(
                format_validation_error(exc, prefix=f"sources[{i}].profile({src.profile})")
            )
        except (OSError, yaml.YAMLError) as exc:
            errors.append(f"sources[{i}].profile: cannot load {src.profile!r}: {exc}")

    lines: dict[str, tuple[int, ModbusRtuSource]] = {}
    for i, src in enumerate(settings.sources):
        if isinstance(src, ModbusRtuSource):
            first = lines.setdefault(src.serial_port, (i, src))
            settings_of = ("baudrate", "parity", "stopbits", "bytesize")
            if any(getattr(src, k) != getattr(first[1], k) for k in settings_of):
                errors.append(
                    f"sources[{i}]: shares serial port {src.serial_port} with sources[{first[0]}] "
                    "but not its line settings (baudrate, parity, stopbits, bytesize)"
                )

    for i, src in enumerate(settings.sources):
        if isinstance(src, OpcUaSource):
            errors.extend(check_opcua_security(f"sources[{i}].security", src.security, path.parent))

    by_name = {s.name: s for s in settings.sources}
    for a_i, asset in enumerate(settings.assets):
        if asset.window is not None and asset.hop is not None and asset.hop > asset.window:
            errors.append(f"assets[{a_i}].hop: must be <= window ({asset.window})")
        for s_i, sig in enumerate(asset.signals):
            where = f"assets[{a_i}].signals[{s_i}]"
            if sig.source not in by_name:
                known = ", ".join(sorted(by_name))
                errors.append(f"{where}.source: unknown source {sig.source!r} (known: {known})")
                continue
            profile = profiles.get(sig.source)
            if profile is None:
                continue  # already reported on the source
            try:
                profile.check_signal(sig.point_name)
            except ValueError as exc:
                errors.append(f"{where}.point: {exc}")
            except KeyError:
                errors.append(
                    f"{where}.point: {sig.point_name!r} is not in profile "
                    f"{by_name[sig.source].profile!r} of source {sig.source!r}"
                )
    keys = {}
    for i, key_path in enumerate(settings.bundles.trusted_keys):
        try:
            key = load_public_key(resolve_path(path.parent, key_path))
        except SigningKeyError as exc:
            errors.append(f"bundles.trusted_keys[{i}]: {exc}")
            continue
        keys[key_id(key)] = key
    trust = BundleTrust(keys, settings.bundles.allow_unsigned)
    if errors:
        raise ConfigError(errors)
    return LoadedConfig(settings=settings, path=path, profiles=profiles, bundle_trust=trust)
