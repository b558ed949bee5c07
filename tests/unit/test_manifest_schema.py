"""The documented bundle manifest JSON Schema is generated from the runtime's model and must
stay in sync with it; a freshly trained manifest validates against it."""

import json
from pathlib import Path

import jsonschema

from edge_agent.inference.bundle import Manifest, read_manifest

DOC = Path(__file__).resolve().parents[2] / "docs" / "bundle-manifest.schema.json"


def generated() -> dict:
    schema = Manifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "edge-agent/bundle-manifest/1"
    schema["title"] = "edge-agent model bundle manifest (schema_version 1)"
    return schema


def test_documented_schema_is_current():
    # Regenerate with the body of `generated()` when the manifest model changes.
    assert json.loads(DOC.read_text()) == generated()


def test_trained_manifest_validates(trained_bundle):
    manifest = read_manifest(trained_bundle.directory)
    jsonschema.Draft202012Validator(json.loads(DOC.read_text())).validate(manifest)


def test_trained_manifest_has_alerting_and_one_without_it_still_loads(trained_bundle):
    """Bundles trained before issues 17/19 have no `alerting`: they load, and their pipeline
    keeps the bundle's hop, persistence for every score and clearing at the first calm window."""
    from edge_agent.replay_cli import pipeline_for

    manifest = read_manifest(trained_bundle.directory)
    al = manifest["alerting"]
    assert al["gross"] >= manifest["threshold"]["raise"] and al["quiet_period_s"] > 0
    new = pipeline_for(trained_bundle)
    assert new.windows.hop == 1 and new.policy.params.gross_threshold == al["gross"]
    del manifest["alerting"]
    old = Manifest.model_validate(manifest)
    assert old.alerting is None
    trained_bundle.manifest, kept = old, trained_bundle.manifest
    try:
        p = pipeline_for(trained_bundle).policy.params
        assert (p.gross_threshold, p.quiet_period_s, p.k, p.n) == (None, 0.0, 3, 5)
        assert pipeline_for(trained_bundle).windows.hop == old.hop
    finally:
        trained_bundle.manifest = kept
