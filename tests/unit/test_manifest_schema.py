"""The documented bundle manifest JSON Schema is generated from the runtime's model and must
stay in sync with it; a freshly trained manifest validates against it."""

import json
from pathlib import Path

import jsonschema

from edge_agent.inference.bundle import Manifest

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
    manifest = json.loads((trained_bundle.directory / "manifest.json").read_text())
    jsonschema.Draft202012Validator(json.loads(DOC.read_text())).validate(manifest)
