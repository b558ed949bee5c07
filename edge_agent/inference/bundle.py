"""Model bundle: a directory with `manifest.json` and the files it lists, each with its sha256.

The runtime trusts nothing it cannot verify: a bundle whose files do not match their checksums,
whose manifest does not parse, or whose signals differ from the asset's config is refused with the
reason named.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


class BundleError(Exception):
    """A bundle that cannot be used; the message says why."""


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
    offset: list[float]
    tolerance: list[Annotated[float, Field(gt=0)] | None]


class ThresholdSpec(_Frozen):
    raise_: float = Field(alias="raise", gt=0)
    clear: float = Field(gt=0)
    method: str
    quantile: float
    margin: float
    calibration_windows: int

    @model_validator(mode="after")
    def _hysteresis(self) -> ThresholdSpec:
        if self.clear > self.raise_:
            raise ValueError("clear threshold must not exceed raise threshold")
        return self


class ModelSpec(_Frozen):
    file: str
    input: str
    outputs: list[str]
    precision: Literal["int8", "fp32"]
    architecture: str


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
    model: ModelSpec
    classifier: ClassifierSpec | None = None
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
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Bundle:
    """A verified bundle; construct with `Bundle.load`."""

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        self.directory = directory
        self.manifest = manifest

    @property
    def model_path(self) -> Path:
        return self.directory / self.manifest.model.file

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        path = directory / MANIFEST
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BundleError(f"{path}: no manifest (is {directory} a model bundle?)") from None
        except (OSError, ValueError) as exc:
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
        return cls(directory, manifest)

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
    """Write the manifest atomically (tmp + rename) so a reader never sees half a file."""
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / MANIFEST)
