"""Model bundle: a directory with a manifest and the files it lists, each with its sha256,
signed with an ed25519 key (`signature.json`, covering the exact bytes of the manifest file).

The manifest is JSON, stored gzip-compressed as `manifest.json.gz` (issue 16: beside a 23 KB
int8 model its 3.5 KB of JSON were what kept the bundle from being 3x smaller than its fp32
twin). A plain `manifest.json` is read too: bundles written before, and a manifest unpacked to
be edited by hand and signed again. A folder with both is refused: which one counts would be a
guess.

The runtime trusts nothing it cannot verify: a bundle whose signature is missing (unless
unsigned bundles are explicitly allowed), does not verify or comes from a key not trusted, whose
files do not match their checksums, whose manifest does not parse, or whose signals differ from
the asset's config is refused with the reason named. The signature covers the manifest and the
manifest covers every file by its sha256, so the signature covers the whole bundle.

Offline tools (replay, bench) load bundles without a `BundleTrust`: checksums only.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_agent.energy.efficiency import EfficiencySpec
from edge_agent.inference.model_io import check_outputs
from edge_agent.private_files import write_private_bytes

# cryptography (its Rust extension is ~7 MB resident) is imported where a key is read or made:
# an agent that verifies no signature (no trusted keys configured) never loads it.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

MANIFEST = "manifest.json.gz"
PLAIN_MANIFEST = "manifest.json"
MANIFEST_NAMES = (MANIFEST, PLAIN_MANIFEST)
# A manifest is a few KB; anything that inflates beyond this is not one (a bundle arrives from
# outside the gateway: a compressed manifest must not be able to fill its memory).
MAX_MANIFEST_BYTES = 1 << 20
SIGNATURE = "signature.json"
SIGNATURE_ALGORITHM = "ed25519"
SCHEMA_VERSION = 1


class BundleError(Exception):
    """A bundle that cannot be used; the message says why."""


def manifest_path(directory: Path) -> Path:
    """The bundle's manifest file: `manifest.json.gz`, or a plain `manifest.json`. BundleError
    when there is none, or both."""
    present = [directory / n for n in MANIFEST_NAMES if (directory / n).is_file()]
    if not present:
        raise BundleError(
            f"{directory}: no manifest ({' or '.join(MANIFEST_NAMES)}; is it a model bundle?)"
        )
    if len(present) > 1:
        raise BundleError(
            f"{directory}: both {MANIFEST} and {PLAIN_MANIFEST}; keep the one that is meant "
            "(and sign it again)"
        )
    return present[0]


def manifest_text(path: Path, stored: bytes) -> str:
    """The JSON text of a manifest file's bytes (`stored`, as read from `path`): inflated when
    the file is gzip-compressed, bounded by MAX_MANIFEST_BYTES. BundleError otherwise."""
    data = stored
    if path.name.endswith(".gz"):
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip container
        try:
            data = inflate.decompress(stored, MAX_MANIFEST_BYTES + 1)
        except zlib.error as exc:
            raise BundleError(f"{path}: unreadable manifest: not gzip data ({exc})") from None
        if len(data) > MAX_MANIFEST_BYTES or inflate.unconsumed_tail:
            raise BundleError(f"{path}: manifest inflates beyond {MAX_MANIFEST_BYTES} bytes")
        if not inflate.eof or inflate.unused_data:
            raise BundleError(f"{path}: unreadable manifest: truncated or trailing gzip data")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: unreadable manifest: {exc}") from None


def read_manifest(directory: Path) -> dict[str, object]:
    """The bundle's manifest as parsed JSON, unvalidated (tools that inspect or edit a bundle;
    the agent loads bundles with `Bundle.load`)."""
    path = manifest_path(directory)
    try:
        raw = json.loads(manifest_text(path, path.read_bytes()))
    except OSError as exc:
        raise BundleError(f"{path}: unreadable manifest: {exc}") from None
    except ValueError as exc:
        raise BundleError(f"{path}: unreadable manifest: {exc}") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: the manifest is not a JSON object")
    return raw


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScalerSpec(_Frozen):
    mean: list[float]
    scale: list[float]


class NormalRange(_Frozen):
    """Per-signal range of the training data (engineering units), quoted in alert messages."""

    low: list[float]
    high: list[float]


class LevelModelSpec(_Frozen):
    """How the model judges window levels (documentation of what the graph computes): each
    signal's level against its relation to the other signals' levels, with a tolerance interval
    that widens with leverage. Per signal: effective independent level observations in the
    training data, share of level variance the relation explains, tolerance at zero leverage
    (in the signal's standard deviations; null where the level is not judged because it never
    moved beyond measurement noise in the training data)."""

    method: str
    coverage: float = Field(gt=0, lt=1)
    confidence: float = Field(gt=0, lt=1)
    effective_samples: list[float]
    explained: list[float]
    tolerance: list[float | None]


class LevelShiftSpec(_Frozen):
    """Level shifts against each signal's own recent past (`stream/level_shift.py`): window
    means against a reference with `time_constant` samples; per signal the mean shift on normal
    data and the tolerance interval's half-width (standardized units; null: not judged, e.g. a
    signal constant in training). A ratio of 1 counts as the raise threshold."""

    window: int = Field(ge=2)
    time_constant: float = Field(gt=0)
    coverage: float = Field(gt=0, lt=1)
    confidence: float = Field(gt=0, lt=1)
    effective_samples: list[float]
    # The budget of false level-shift episodes per hour the tolerances were set for (null: a
    # per-signal Normal interval, bundles before it).
    false_alerts_per_hour: float | None = Field(default=None, gt=0)
    offset: list[float]
    tolerance: list[Annotated[float, Field(gt=0)] | None]


class ThresholdSpec(_Frozen):
    raise_: float = Field(alias="raise", gt=0)
    clear: float = Field(gt=0)
    method: str
    quantile: float
    margin: float
    calibration_windows: int
    # The raise rule's k-of-n statistic at its highest on all normal windows, training part
    # included (the raise threshold is at least this); absent in bundles trained before it.
    normal_peak: float | None = None

    @model_validator(mode="after")
    def _hysteresis(self) -> ThresholdSpec:
        if self.clear > self.raise_:
            raise ValueError("clear threshold must not exceed raise threshold")
        return self


class AlertingSpec(_Frozen):
    """How the alert policy treats this asset's scores (`alerts/policy.py`), calibrated on the same
    held-out normal windows as the thresholds (`training/alerting.py`). Absent in bundles trained
    before issues 17/19: those keep persistence for every score and clear at the first calm
    window."""

    # A score at or above this raises on its own window (severity-aware raising).
    gross: float = Field(gt=0)
    # Data time the scores must stay calm before an alert's episode clears.
    quiet_period_s: float = Field(ge=0)
    # False alerts per asset-hour this calibration supports (the agent's false-alarm budget).
    expected_false_alerts_per_hour: float = Field(ge=0)
    calibration_hours: float = Field(gt=0)
    calibration_false_alerts: int = Field(ge=0)
    decorrelation_samples: int = Field(ge=1)
    method: str


class ModelSpec(_Frozen):
    file: str
    input: str
    # Read by the detector, which unpacks them by position: only the contract's names in the
    # contract's order are accepted (`model_io.py`), so a model whose outputs mean something
    # else is refused when the bundle loads instead of being scored wrongly.
    outputs: list[str]
    precision: Literal["int8", "fp32"]
    architecture: str

    @field_validator("outputs")
    @classmethod
    def _contract(cls, outputs: list[str]) -> list[str]:
        check_outputs(outputs)
        return outputs


class ClassifierSpec(_Frozen):
    file: str
    input: str
    output: str
    labels: list[str] = Field(min_length=2)
    validation_accuracy: float | None = None
    int8_vs_fp32_agreement: float | None = None


class FileSpec(_Frozen):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Manifest(_Frozen):
    schema_version: Literal[1]
    model_version: str
    created_at: str
    signals: list[str] = Field(min_length=1)
    units: list[str] | None = None
    sample_period_s: float = Field(gt=0)
    window: int = Field(ge=2)
    hop: int = Field(ge=1)
    scaler: ScalerSpec
    normal_range: NormalRange
    level_model: LevelModelSpec | None = None
    level_shift: LevelShiftSpec | None = None
    # Per signal: exact repetitions (samples) after which the value counts as stuck; null for
    # signals that were constant in training. Absent in bundles trained before the check existed.
    stuck_after_samples: list[Annotated[int, Field(ge=1)] | None] | None = None
    threshold: ThresholdSpec
    alerting: AlertingSpec | None = None
    model: ModelSpec
    classifier: ClassifierSpec | None = None
    # Expected power at the operating point, for `efficiency` alerts (edge_agent/energy/).
    efficiency: EfficiencySpec | None = None
    files: dict[str, FileSpec]
    agreement: dict[str, float] = {}
    training: dict[str, float | int | str] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        n = len(self.signals)
        for name, arr in (
            ("scaler.mean", self.scaler.mean),
            ("scaler.scale", self.scaler.scale),
            ("normal_range.low", self.normal_range.low),
            ("normal_range.high", self.normal_range.high),
            *(
                (f"level_model.{k}", getattr(self.level_model, k))
                for k in ("effective_samples", "explained", "tolerance")
                if self.level_model is not None
            ),
            *(
                (f"level_shift.{k}", getattr(self.level_shift, k))
                for k in ("effective_samples", "offset", "tolerance")
                if self.level_shift is not None
            ),
            *(
                [("stuck_after_samples", self.stuck_after_samples)]
                if self.stuck_after_samples is not None
                else []
            ),
        ):
            if len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} entries for {n} signals")
        for f in (self.model.file, self.classifier.file if self.classifier else None):
            if f is not None and f not in self.files:
                raise ValueError(f"model file {f!r} has no entry in files")
        return self


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, as the manifest's `files` list them."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# -- keys and signatures ---------------------------------------------------------------------


class SigningKeyError(BundleError):
    """A key file that cannot be used (unreadable, not PEM, not ed25519)."""


def key_id(key: Ed25519PublicKey) -> str:
    """Fingerprint of a public key: the first 16 bytes of the sha256 of its raw 32 bytes, hex.
    From the PEM file: `openssl pkey -pubin -in K.pub -outform DER | tail -c 32 | sha256sum`,
    first 32 hex digits."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An ed25519 public key from a PEM file (`edge-agent keys` or `openssl pkey -pubout`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SigningKeyError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path}: not an ed25519 key ({type(key).__name__})")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted ed25519 private key from a PEM file (PKCS#8, as `openssl genpkey` and
    `edge-agent keys` write it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an ed25519 key ({type(key).__name__})")
    return key


def write_key_pair(
    out: Path, name: str = "bundle-signing", force: bool = False
) -> tuple[Path, Path]:
    """A new signing key pair: `out/NAME.key` (private, created 0600) and `out/NAME.pub` (public,
    PEM, for the agents' `bundles.trusted_keys`). An existing key is never replaced without
    `force` (agents may trust it already)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    if not force:
        for p in (key_path, pub_path):
            if p.exists():
                raise SigningKeyError(
                    f"{p} exists (agents may trust it already); --force replaces it"
                )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_bytes(key_path, pem)
    pub_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path, pub_path


@dataclass(frozen=True)
class BundleTrust:
    """What the agent accepts: signatures by these public keys (by key id), and unsigned bundles
    (or signed by a key not listed: unverifiable alike) only when `allow_unsigned` (insecure,
    said so wherever the model is reported)."""

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    allow_unsigned: bool = False

    @classmethod
    def from_files(cls, paths: list[Path], allow_unsigned: bool = False) -> BundleTrust:
        keys = [load_public_key(p) for p in paths]
        return cls({key_id(k): k for k in keys}, allow_unsigned)


def _verify_signature(
    directory: Path, manifest_name: str, manifest_bytes: bytes, trust: BundleTrust
) -> str | None:
    """The key id that signed these bytes of the manifest file `manifest_name`; None for an
    unsigned bundle that the trust allows. Raises BundleError naming the reason otherwise."""
    path = directory / SIGNATURE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if trust.allow_unsigned:
            return None
        raise BundleError(
            f"{directory}: unsigned bundle (no {SIGNATURE}); sign it (`edge-agent sign`) with a "
            "key listed in bundles.trusted_keys, or set bundles.allow_unsigned: true (insecure)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: unreadable signature: {exc}") from None
    try:
        doc = json.loads(text)
        algorithm, kid, sig_b64 = doc["algorithm"], doc["key_id"], doc["signature"]
        # Signatures from before the compressed manifest name no file: they signed the plain one.
        signed = doc.get("signed_file", PLAIN_MANIFEST)
        if not (isinstance(kid, str) and isinstance(sig_b64, str)):
            raise ValueError("key_id and signature must be strings")
        signature = base64.b64decode(sig_b64, validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise BundleError(f"{path}: malformed signature file: {exc!r}") from None
    if algorithm != SIGNATURE_ALGORITHM:
        raise BundleError(f"{path}: unsupported signature algorithm {algorithm!r} (need ed25519)")
    if signed != manifest_name:
        raise BundleError(
            f"{directory}: invalid signature: it covers {signed!r}, but the bundle's manifest is "
            f"{manifest_name} (replaced after signing?)"
        )
    key = trust.keys.get(kid)
    if key is None and trust.allow_unsigned:
        # Not verifiable here, so no better than unsigned, which this trust accepts (deleting
        # signature.json would get the same); a known key's signature must still verify.
        return None
    if key is None:
        known = ", ".join(sorted(trust.keys)) or "none configured"
        raise BundleError(
            f"{directory}: signed by unknown key {kid} (trusted keys: {known}; "
            "add its public key to bundles.trusted_keys)"
        )
    from cryptography.exceptions import InvalidSignature  # loaded with the key already

    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise BundleError(
            f"{directory}: invalid signature: {manifest_name} is not what key {kid} signed "
            "(edited after signing?)"
        ) from None
    return kid


def sign_bundle(directory: Path, key: Ed25519PrivateKey) -> Path:
    """Write `signature.json` over the exact bytes of the manifest file. The bundle's checksums
    are verified first: a bundle edited since its manifest was written is not signed."""
    Bundle.load(directory)
    path = manifest_path(directory)
    manifest_bytes = path.read_bytes()
    doc = {
        "schema_version": 1,
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": key_id(key.public_key()),
        "signed_file": path.name,
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii"),
    }
    tmp = directory / (SIGNATURE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / SIGNATURE)
    return directory / SIGNATURE


# -- bundles -----------------------------------------------------------------------------------


class Bundle:
    """A verified bundle; construct with `Bundle.load`."""

    def __init__(
        self, directory: Path, manifest: Manifest, signed_by: str | None = None,
        unsigned: bool = False,
    ) -> None:  # fmt: skip
        self.directory = directory
        self.manifest = manifest
        # Key id of the verified signature; None when not checked (offline tools) or unsigned.
        self.signed_by = signed_by
        # True when loaded without a signature because the trust allowed it (insecure).
        self.unsigned = unsigned

    @property
    def model_path(self) -> Path:
        return self.directory / self.manifest.model.file

    @classmethod
    def load(cls, directory: Path, trust: BundleTrust | None = None) -> Bundle:
        """Load and verify a bundle: with `trust`, its signature first (over the very bytes
        parsed next), then the manifest and every file's checksum. Without `trust`, checksums
        only (offline tools on one's own bundles)."""
        path = manifest_path(directory)
        try:
            manifest_bytes = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"{path}: unreadable manifest: {exc}") from None
        signed_by = None
        if trust is not None:
            signed_by = _verify_signature(directory, path.name, manifest_bytes, trust)
        try:
            raw = json.loads(manifest_text(path, manifest_bytes))
        except ValueError as exc:
            raise BundleError(f"{path}: unreadable manifest: {exc}") from None
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise BundleError(f"{path}: invalid manifest: {where}: {first['msg']}") from None
        for name, spec in manifest.files.items():
            f = directory / name
            if f.resolve().parent != directory.resolve():
                raise BundleError(f"{path}: file {name!r} is outside the bundle")
            try:
                digest = sha256_file(f)
            except OSError as exc:
                raise BundleError(f"{f}: cannot read: {exc.strerror or exc}") from None
            if digest != spec.sha256:
                raise BundleError(
                    f"{f}: checksum mismatch (manifest {spec.sha256[:12]}…, file {digest[:12]}…)"
                )
        return cls(directory, manifest, signed_by, unsigned=trust is not None and not signed_by)

    def describe_signature(self) -> str:
        if self.unsigned:
            return "UNSIGNED (INSECURE: not verified, bundles.allow_unsigned is set)"
        return f"signed by key {self.signed_by}" if self.signed_by else "signature not checked"

    def check_signals(self, expected: list[str]) -> None:
        """Refuse a bundle trained for other signals, naming the difference."""
        have = self.manifest.signals
        if have == expected:
            return
        missing = [s for s in expected if s not in have]
        extra = [s for s in have if s not in expected]
        parts = []
        if missing:
            parts.append(f"config signals not in bundle: {', '.join(missing)}")
        if extra:
            parts.append(f"bundle signals not in config: {', '.join(extra)}")
        if not parts:
            parts.append(f"order differs: bundle has {', '.join(have)}")
        raise BundleError(f"{self.directory}: signals do not match the asset ({'; '.join(parts)})")


def write_manifest(directory: Path, manifest: dict[str, object]) -> None:
    """Write the manifest, gzip-compressed, atomically (tmp + rename) so a reader never sees
    half a file. A signature of an earlier manifest in the folder is removed (it no longer
    applies), and so is a plain `manifest.json` (this one replaces it)."""
    (directory / SIGNATURE).unlink(missing_ok=True)
    (directory / PLAIN_MANIFEST).unlink(missing_ok=True)
    tmp = directory / (MANIFEST + ".tmp")
    # Compact JSON (indentation was a quarter of a bundle's non-model bytes), then gzip at its
    # best level with no name and time in the header: the same manifest gives the same bytes,
    # so the same signature and archive digest. `edge-agent manifest DIR` shows it indented.
    text = json.dumps(manifest, separators=(",", ":")) + "\n"
    tmp.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    tmp.replace(directory / MANIFEST)
