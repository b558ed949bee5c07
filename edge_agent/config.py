"""Agent configuration: pydantic-settings models, loaded from YAML and overridden by environment.

`EDGE_AGENT_UPSTREAM__MQTT__PORT=1884` overrides `upstream.mqtt.port`; environment wins over YAML.
Every error is reported with its field path (`sources[0].port: ...`); nothing is silently dropped
(unknown keys are errors, so a typo cannot turn into a default).
"""

from __future__ import annotations

from dataclasses import dataclass
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

from edge_agent.profiles import DeviceProfile, load_profile, packaged_profile_dirs, resolve_profile

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


class ModbusTcpSource(_Strict):
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
    backoff: Backoff = Backoff()


Source = Annotated[ModbusTcpSource, Field(discriminator="type")]


class SignalRef(_Strict):
    name: str = Field(pattern=NAME)
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


class Logging(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EDGE_AGENT_", env_nested_delimiter="__", extra="forbid"
    )

    identity: Identity
    sources: list[Source] = Field(min_length=1)
    assets: list[Asset] = Field(min_length=1)
    upstream: Upstream = Upstream()
    logging: Logging = Logging()
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
    profiles: dict[str, DeviceProfile]  # by source name

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
    tags = {"modbus_tcp"}
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
    profiles: dict[str, DeviceProfile] = {}
    for i, src in enumerate(settings.sources):
        try:
            profiles[src.name] = load_profile(resolve_profile(src.profile, search))
        except FileNotFoundError as exc:
            errors.append(f"sources[{i}].profile: {exc}")
        except ValidationError as exc:
            errors.extend(
                format_validation_error(exc, prefix=f"sources[{i}].profile({src.profile})")
            )
        except (OSError, yaml.YAMLError) as exc:
            errors.append(f"sources[{i}].profile: cannot load {src.profile!r}: {exc}")

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
                profile.point(sig.point_name)
            except KeyError:
                errors.append(
                    f"{where}.point: {sig.point_name!r} is not in profile "
                    f"{by_name[sig.source].profile!r} of source {sig.source!r}"
                )
    if errors:
        raise ConfigError(errors)
    return LoadedConfig(settings=settings, path=path, profiles=profiles)
