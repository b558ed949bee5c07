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
    MAX_NAME,
    BackoffConfig,
    ClientId,
    ClockSkewConfig,
    Host,
    Name,
    StrictModel,
    TopicLevel,
    check_readable,
    check_writable_dir,
    resolve_path,
)
from edge_agent.energy.spec import AssetEnergyConfig
from edge_agent.inference.bundle import BundleTrust, SigningKeyError, key_id, load_public_key
from edge_agent.limits import LimitSpec, check_limits
from edge_agent.profiles import load_any_profile, packaged_profile_dirs, resolve_profile
from edge_agent.signal_names import signal_name
from edge_agent.sources.profile_base import ProfileBase
from edge_agent.sources.registry import (
    PROFILE_TAGS,
    PROTOCOL_OF_KIND,
    PROTOCOLS,
    SOURCE_TAGS,
    SourceConfig,
)
from edge_agent.upstream.sparkplug.config import SparkplugConfig, check_sparkplug


class IdentityConfig(StrictModel):
    site: TopicLevel
    gateway: TopicLevel


def _signal_name(value: object) -> object:
    return signal_name(value) if isinstance(value, str) else value


class SignalConfig(StrictModel):
    # Any text names a signal, mapped as CSV headers are (`csvdata.signal_name`): `Flow Rate [m3/h]`
    # and `Flow  Rate` are the signal `Flow Rate`, as in a historian export's header.
    name: Annotated[str, BeforeValidator(_signal_name), Field(min_length=1, max_length=MAX_NAME)]
    source: str
    point: str | None = None  # defaults to the signal name

    @property
    def point_name(self) -> str:
        return self.point or self.name


class ForecastConfig(StrictModel):
    """Time-to-limit forecasts (issue 14) on every signal of the asset that has a limit (from its
    device profile or `limits` below): a `predicted` alert when the 80 % interval's near end of
    the time to the limit falls under `horizon_s`."""

    enabled: bool = True
    horizon_s: float = Field(5400.0, gt=0)
    # Levels: the upper envelope of each `bucket_s` of valid samples (the lower one for a low
    # limit); the trend is fitted on the last `history_s` of them, once at least `min_history_s`
    # are there. Three hours: a process that wanders for tens of minutes (demand, load) tilts
    # the slope of a shorter history (docs/QUALITY.md).
    bucket_s: float = Field(120.0, gt=0)
    history_s: float = Field(10800.0, gt=0)
    min_history_s: float = Field(1800.0, gt=0)
    # While a `predicted` alert is open: an `updated` event when the estimate moved by more than
    # a fifth, at most this often.
    update_interval_s: float = Field(600.0, ge=0)

    @model_validator(mode="after")
    def _history(self) -> ForecastConfig:
        if self.min_history_s > self.history_s:
            raise ValueError("min_history_s must be <= history_s")
        if self.history_s < 5 * self.bucket_s:
            raise ValueError("history_s must hold at least 5 buckets (bucket_s)")
        return self


class AssetConfig(StrictModel):
    name: TopicLevel
    sample_period_s: float = Field(gt=0)
    # A signal older than this at a grid instant makes the sample invalid (no window over it).
    max_age_s: float | None = Field(None, gt=0)
    window: int | None = Field(None, ge=2, le=100_000)
    hop: int | None = Field(None, ge=1)
    bundle: Path
    signals: list[SignalConfig] = Field(min_length=1)
    # While an alert is active: an `updated` event on a severity change, at most this often.
    alert_update_interval_s: float | None = Field(None, gt=0)
    # Episodes (issue 19): data time without the raise rule holding before an alert clears;
    # recurrences within it are `updated`, and calming inside it an `updated` saying the
    # condition returned to normal. "bundle" or None (default): the bundle's calibrated quiet
    # period; 0: clear at the first calm window (one alert per excursion, not per episode).
    alert_quiet_period_s: Annotated[float, Field(ge=0)] | Literal["bundle"] | None = None
    # Alarm/trip limits by signal name, over those of the signals' device profiles. Once the
    # config is loaded (`load_config`) this holds the asset's effective limits: the profiles'
    # with these laid over them.
    limits: dict[str, LimitSpec] = Field(default_factory=dict)
    forecast: ForecastConfig = ForecastConfig()
    # Energy per asset (edge_agent/energy/): on when a source's profile declares `energy:`.
    energy: AssetEnergyConfig | None = None

    @model_validator(mode="after")
    def _unique_signals(self) -> AssetConfig:
        names = [s.name for s in self.signals]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate signal names: {', '.join(dup)}")
        return self

    @property
    def effective_max_age_s(self) -> float:
        return self.max_age_s if self.max_age_s is not None else 2.5 * self.sample_period_s


class TlsConfig(StrictModel):
    ca_file: Path  # CA bundle that signed the broker's certificate
    cert_file: Path | None = None  # client certificate (mutual TLS), with key_file
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttConfig(StrictModel):
    host: Host = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: ClientId | None = None  # default: edge-agent-{site}-{gateway}
    topic_prefix: str = Field(
        "edge", min_length=1, max_length=4 * MAX_NAME, pattern=r"^[^#+\s\x00-\x1f\x7f]+$"
    )
    # YAML reads `5` as a number and `3.1.1` as a string; both name a protocol version.
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(str)] = "5"
    qos: Literal[0, 1] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)
    # How long the broker keeps our session (MQTT 5 session expiry) while we are away.
    session_expiry_s: int = Field(86_400, ge=0)
    tls: TlsConfig | None = None
    username: str | None = None
    # The password comes from exactly one place, never from the YAML itself: a file, a systemd
    # credential ($CREDENTIALS_DIRECTORY/<name>) or an environment variable (the default).
    password_file: Path | None = None
    password_credential: Name | None = None
    password_env: str = Field("EDGE_AGENT_MQTT_PASSWORD", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    backoff: BackoffConfig = BackoffConfig()

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttConfig:
        if self.password_file is not None and self.password_credential is not None:
            raise ValueError("password_file and password_credential are exclusive")
        return self


class OutboxConfig(StrictModel):
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


class TelemetryConfig(StrictModel):
    """Optional QoS 0 score telemetry, rate-limited per asset; off by default."""

    enabled: bool = False
    interval_s: float = Field(10.0, ge=0.1)


class UpstreamConfig(StrictModel):
    mqtt: MqttConfig = MqttConfig()
    outbox: OutboxConfig = OutboxConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    # Sparkplug B beside the JSON topics (docs/FLEET.md); off by default.
    sparkplug: SparkplugConfig = SparkplugConfig()


class BundlesConfig(StrictModel):
    """Which model bundles the agent runs: those signed by one of `trusted_keys` (public keys,
    PEM, relative to the config file; `edge-agent keys` makes a pair). Unsigned bundles only with
    `allow_unsigned: true`, which is insecure (anyone who can write the bundle folder decides what
    raises an alert) and said so in the log, the `model_loaded` event and the status message.
    With neither, every bundle is refused as unsigned."""

    trusted_keys: list[Path] = Field(default_factory=list)
    allow_unsigned: bool = False


class FleetConfig(StrictModel):
    """Remote deployment over MQTT (docs/FLEET.md): the agent takes commands (deploy a bundle,
    roll back, push a config, status) signed by a key of `bundles.trusted_keys` on
    `{prefix}/{site}/{gateway}/cmd/#` and `{prefix}/fleet/cmd/#`. Off by default: whoever holds
    a trusted key can then change the model and the config remotely."""

    enabled: bool = False
    # Clock difference allowed between the operator and the gateway when judging a command's
    # issue and expiry times.
    max_skew_s: float = Field(60.0, ge=0, le=3600)
    # A deploy whose next chunk does not arrive within this long is refused (missing chunk).
    chunk_timeout_s: float = Field(30.0, gt=0, le=3600)


class LoggingConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class MetricsConfig(StrictModel):
    """The HTTP endpoint for Prometheus (/metrics) and for health checks (/healthz, /readyz).
    Loopback by default: it is unauthenticated, so exposing it is a deliberate choice."""

    enabled: bool = True
    host: Host = "127.0.0.1"
    port: int = Field(default=9810, ge=0, le=65535)  # 0: pick a free port (tests), logged


class ObservabilityConfig(StrictModel):
    metrics: MetricsConfig = MetricsConfig()
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

    identity: IdentityConfig
    sources: list[SourceConfig] = Field(min_length=1)
    assets: list[AssetConfig] = Field(min_length=1)
    upstream: UpstreamConfig = UpstreamConfig()
    bundles: BundlesConfig = BundlesConfig()
    fleet: FleetConfig = FleetConfig()
    logging: LoggingConfig = LoggingConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
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

    def bundle_dir(self, asset: AssetConfig) -> Path:
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


# A config is a few kilobytes; a cap keeps a wrong file (a log, a dump) from taking the gateway's
# memory and time before it is refused.
MAX_CONFIG_BYTES = 1024 * 1024
# YAML aliases may repeat a block; a "billion laughs" document nests them so that a few hundred
# bytes stand for hundreds of millions of values, which validation would then walk. A config has
# hundreds of values: its size counted with every alias expanded is capped.
MAX_EXPANDED_NODES = 100_000


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of `node` with aliases expanded, each shared node measured once."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once instead of forever
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[key] = size
    return size


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                [f"{path}: {size} bytes; a config is at most {MAX_CONFIG_BYTES} bytes"]
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"]
        ) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        size = _expanded_size(node, {}) if node is not None else 0
        if size > MAX_EXPANDED_NODES:
            raise ConfigError(
                [f"{path}: {size} values once its aliases (*name) are expanded; a config has at "
                 f"most {MAX_EXPANDED_NODES}"]
            )  # fmt: skip
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    except RecursionError:
        raise ConfigError([f"{path}: nested too deeply to be a config"]) from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: top level must be a mapping, got {type(data).__name__}"])
    return data


def check_files(settings: AgentSettings, base: Path) -> list[str]:
    """Every file the agent-wide sections name is there and readable, and the outbox folder takes
    writes: `run` would stop on each of them later, `validate` says so now."""
    errors: list[str] = []
    mqtt = settings.upstream.mqtt
    if mqtt.tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            file = getattr(mqtt.tls, key)
            if file is not None:
                errors += check_readable(f"upstream.mqtt.tls.{key}", resolve_path(base, file))
    if mqtt.password_file is not None:
        errors += check_readable(
            "upstream.mqtt.password_file", resolve_path(base, mqtt.password_file)
        )
    errors += check_writable_dir(
        "upstream.outbox.dir", resolve_path(base, settings.upstream.outbox.dir)
    )
    return errors


def effective_limits(
    asset: AssetConfig, profiles: dict[str, ProfileBase]
) -> tuple[dict[str, LimitSpec], list[tuple[str, str]]]:
    """The asset's limits by signal name: its profiles' limits on the points it reads, with the
    asset's own laid over them; and (signal, problem) for each of its own on a signal it lacks
    or in a unit its signal does not have."""
    units: dict[str, str] = {}
    merged: dict[str, LimitSpec] = {}
    for sig in asset.signals:
        profile = profiles.get(sig.source)
        if profile is None or sig.point_name not in profile.point_names():
            continue
        units[sig.name] = profile.unit_of(sig.point_name)
        if (spec := profile.limits.get(sig.point_name)) is not None:
            merged[sig.name] = spec
    # A signal whose source failed to load is reported there; only judge what can be judged.
    names = {s.name for s in asset.signals}
    judged = {n: spec for n, spec in asset.limits.items() if n in units or n not in names}
    problems = check_limits(judged, units)
    merged.update(asset.limits)
    return merged, problems


def load_config(path: Path, *, files: bool = True) -> LoadedConfig:
    """Parse, validate and cross-check a config file. Raises ConfigError listing every problem.

    `files=False` leaves out what only the agent's own user on the gateway can check (files it
    reads, folders it writes): for `edge-agent status`, which an operator may run as anyone."""
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

    if files:
        errors.extend(check_files(settings, path.parent))
    for protocol in PROTOCOLS:
        mine = [(i, s) for i, s in enumerate(settings.sources) if s.type in protocol.kinds]
        if mine:
            errors.extend(protocol.check(mine, path.parent if files else None))

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
        energy_source = asset.energy.source if asset.energy is not None else None
        if energy_source is not None and energy_source not in by_name:
            errors.append(
                f"assets[{a_i}].energy.source: unknown source {energy_source!r} "
                f"(known: {', '.join(sorted(by_name))})"
            )
    for a_i, asset in enumerate(settings.assets):
        merged, problems = effective_limits(asset, profiles)
        errors.extend(f"assets[{a_i}].limits.{name}: {why}" for name, why in problems)
        settings.assets[a_i] = asset.model_copy(update={"limits": merged})
    keys = {}
    for i, key_path in enumerate(settings.bundles.trusted_keys):
        try:
            key = load_public_key(resolve_path(path.parent, key_path))
        except SigningKeyError as exc:
            errors.append(f"bundles.trusted_keys[{i}]: {exc}")
            continue
        keys[key_id(key)] = key
    trust = BundleTrust(keys, settings.bundles.allow_unsigned)
    if settings.fleet.enabled and not settings.bundles.trusted_keys:
        errors.append(
            "fleet.enabled: fleet commands must be signed by a key in bundles.trusted_keys, "
            "and none is configured"
        )
    errors.extend(check_sparkplug(settings.upstream.sparkplug))
    if errors:
        raise ConfigError(errors)
    return LoadedConfig(settings=settings, path=path, profiles=profiles, bundle_trust=trust)
