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
    BeforeValidator,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from edge_agent.config_base import (
    NAME,
    TOPIC_LEVEL,
    BackoffConfig,
    ClockSkewConfig,
    StrictModel,
    resolve_path,
)
from edge_agent.csvdata import signal_name
from edge_agent.inference.bundle import BundleTrust, SigningKeyError, key_id, load_public_key
from edge_agent.profiles import load_any_profile, packaged_profile_dirs, resolve_profile
from edge_agent.sources.profile_base import ProfileBase
from edge_agent.sources.registry import (
    PROFILE_TAGS,
    PROTOCOL_OF_KIND,
    PROTOCOLS,
    SOURCE_TAGS,
    SourceConfig,
)


class Identity(StrictModel):
    site: str = Field(pattern=TOPIC_LEVEL)
    gateway: str = Field(pattern=TOPIC_LEVEL)


def _signal_name(value: object) -> object:
    return signal_name(value) if isinstance(value, str) else value


class SignalRef(StrictModel):
    # Any text names a signal, mapped as CSV headers are (`csvdata.signal_name`): `Flow Rate [m3/h]`
    # and `Flow  Rate` are the signal `Flow Rate`, as in a historian export's header.
    name: Annotated[str, BeforeValidator(_signal_name), Field(min_length=1)]
    source: str
    point: str | None = None  # defaults to the signal name

    @property
    def point_name(self) -> str:
        return self.point or self.name


class Asset(StrictModel):
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
    # How long an alert's scores must stay calm before its episode clears; None: the bundle's
    # calibrated quiet period (0 for bundles without one: clear at the first calm window).
    alert_quiet_period_s: float | None = Field(None, ge=0)

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


class Tls(StrictModel):
    ca_file: Path  # CA bundle that signed the broker's certificate
    cert_file: Path | None = None  # client certificate (mutual TLS), with key_file
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> Tls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class Mqtt(StrictModel):
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
    backoff: BackoffConfig = BackoffConfig()

    @model_validator(mode="after")
    def _one_password_source(self) -> Mqtt:
        if self.password_file is not None and self.password_credential is not None:
            raise ValueError("password_file and password_credential are exclusive")
        return self


class Outbox(StrictModel):
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


class Telemetry(StrictModel):
    """Optional QoS 0 score telemetry, rate-limited per asset; off by default."""

    enabled: bool = False
    interval_s: float = Field(10.0, ge=0.1)


class Upstream(StrictModel):
    mqtt: Mqtt = Mqtt()
    outbox: Outbox = Outbox()
    telemetry: Telemetry = Telemetry()


class Bundles(StrictModel):
    """Which model bundles the agent runs: those signed by one of `trusted_keys` (public keys,
    PEM, relative to the config file; `edge-agent keys` makes a pair). Unsigned bundles only with
    `allow_unsigned: true`, which is insecure (anyone who can write the bundle folder decides what
    raises an alert) and said so in the log, the `model_loaded` event and the status message.
    With neither, every bundle is refused as unsigned."""

    trusted_keys: list[Path] = Field(default_factory=list)
    allow_unsigned: bool = False


class Logging(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Metrics(StrictModel):
    """The HTTP endpoint for Prometheus (/metrics) and for health checks (/healthz, /readyz).
    Loopback by default: it is unauthenticated, so exposing it is a deliberate choice."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9810, ge=0, le=65535)  # 0: pick a free port (tests), logged


class Observability(StrictModel):
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
    sources: list[SourceConfig] = Field(min_length=1)
    assets: list[Asset] = Field(min_length=1)
    upstream: Upstream = Upstream()
    bundles: Bundles = Bundles()
    logging: Logging = Logging()
    observability: Observability = Observability()
    clock: ClockSkewConfig = ClockSkewConfig()
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
    profiles: dict[str, ProfileBase]  # by source name
    # The keys of `bundles.trusted_keys`, read and checked at load (a reload reads them again).
    bundle_trust: BundleTrust = field(default_factory=BundleTrust)

    def bundle_dir(self, asset: Asset) -> Path:
        return asset.bundle if asset.bundle.is_absolute() else self.path.parent / asset.bundle


def _loc_to_path(loc: tuple[int | str, ...], tags: frozenset[str]) -> str:
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
    tags = SOURCE_TAGS | PROFILE_TAGS
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
    profiles: dict[str, ProfileBase] = {}
    for i, src in enumerate(settings.sources):
        try:
            loaded = load_any_profile(resolve_profile(src.profile, search))
            wanted = PROTOCOL_OF_KIND[src.type].name
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

    for protocol in PROTOCOLS:
        mine = [(i, s) for i, s in enumerate(settings.sources) if s.type in protocol.kinds]
        if mine:
            errors.extend(protocol.check(mine, path.parent))

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
