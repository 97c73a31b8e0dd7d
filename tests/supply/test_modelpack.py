"""Weights as a CNCF ModelPack artifact: media types, config fields and annotations as the spec
(github.com/modelpack/model-spec, v1) names them; pushed with oras-py to the real registry."""
from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest

from packager.supply import modelpack, registry as reg_mod
from tests.conftest import MODELS
from tests.supply.conftest import need

# The spec's config schema, in its required parts (schema/config-schema.json of model-spec).
CONFIG_SCHEMA = {
    "type": "object", "required": ["descriptor", "config", "modelfs"], "additionalProperties": False,
    "properties": {
        "descriptor": {"type": "object", "properties": {"name": {"type": "string", "minLength": 1},
                                                        "licenses": {"type": "array", "items": {"type": "string"}}}},
        "config": {"type": "object", "additionalProperties": False,
                   "properties": {k: {"type": "string"} for k in
                                  ("architecture", "format", "paramSize", "precision", "quantization")}},
        "modelfs": {"type": "object", "required": ["type", "diffIds"], "additionalProperties": False,
                    "properties": {"type": {"enum": ["layers"]}, "diffIds": {"type": "array", "minItems": 1}}},
    },
}


@pytest.fixture(scope="module")
def plan():
    from packager.planner import plan_files

    return plan_files(str(MODELS / "smollm2-135m-instruct.yaml"), "cpu").to_dict()


@pytest.fixture
def weights_dir(tmp_path):
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (d / "sub" / "model-00002.safetensors").write_bytes(b"\x01" * 5000)
    (d / "config.json").write_text('{"model_type": "llama"}')
    (d / "tokenizer.json").write_text('{"version": "1.0"}')
    (d / "README.md").write_text("# a model card\n")
    return d


def test_manifest_follows_the_modelpack_spec(plan, weights_dir):
    art = modelpack.build_artifact(plan, weights_dir)
    manifest = json.loads(art.manifest)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    types = {ly["annotations"]["org.cncf.model.filepath"]: ly["mediaType"] for ly in manifest["layers"]}
    assert types == {
        "model.safetensors": "application/vnd.cncf.model.weight.v1.raw",
        "sub/model-00002.safetensors": "application/vnd.cncf.model.weight.v1.raw",
        "config.json": "application/vnd.cncf.model.weight.config.v1.raw",
        "tokenizer.json": "application/vnd.cncf.model.weight.config.v1.raw",
        "README.md": "application/vnd.cncf.model.doc.v1.raw",
    }
    for ly in manifest["layers"]:
        assert ly["annotations"]["org.opencontainers.image.title"] == ly["annotations"]["org.cncf.model.filepath"]
    config = json.loads(art.config)
    jsonschema.validate(config, CONFIG_SCHEMA)
    # the plan's facts; diffIds of raw layers are the layers' own digests, in order
    assert config["config"]["precision"] == plan["selected"]["precision"]
    assert config["config"]["format"] == plan["model"]["format"]
    assert config["modelfs"]["diffIds"] == [ly["digest"] for ly in manifest["layers"]]
    assert config["descriptor"]["licenses"] == ["apache-2.0"]
    # deterministic: the same files give the same digest
    assert modelpack.build_artifact(plan, weights_dir).digest == art.digest


def test_a_quantized_variant_lands_in_its_own_directory(plan, weights_dir):
    art = modelpack.build_artifact(plan, weights_dir, {}, "variants/awq-int4/")
    paths = [ly["annotations"]["org.cncf.model.filepath"] for ly in json.loads(art.manifest)["layers"]]
    assert "variants/awq-int4/model.safetensors" in paths and all(p.startswith("variants/awq-int4/") for p in paths)
    assert {f.path for f in art.files} == {p for p in weights_dir.rglob("*") if p.is_file()}


def test_gguf_quantization_comes_from_the_file(plan):
    assert modelpack.quantization(plan) == "Q4_1"
    assert modelpack.quantization({**plan, "model": {**plan["model"], "source": {"file": "m.gguf"}}}) == "none"


def test_a_file_changed_against_the_plan_is_refused(plan, weights_dir):
    from packager.errors import UserError

    bad = {**plan, "model": {**plan["model"], "source": {**plan["model"]["source"],
                                                          "sha256": {"config.json": "0" * 64}}}}
    with pytest.raises(UserError, match="config.json"):
        modelpack.build_artifact(bad, weights_dir)


def test_push_keeps_artifact_type_and_a_second_push_uploads_nothing(plan, weights_dir, registry, tmp_path):
    need("skopeo")
    import os
    import time

    repo = f"supply-test/weights-{os.getpid()}-{time.monotonic_ns()}"  # a repository no earlier run filled
    art = modelpack.build_artifact(plan, weights_dir)
    first = reg_mod.push_artifact(art, registry, repo, modelpack.tag_for(art))
    assert first.uploaded_bytes == art.size_bytes + len(art.config) and first.reused_bytes == 0
    second = reg_mod.push_artifact(art, registry, repo, modelpack.tag_for(art))
    assert second.uploaded_bytes == 0 and second.reused_bytes == first.uploaded_bytes
    assert first.ref == second.ref == f"{registry}/{repo}@{art.digest}"
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{first.tag_ref}"],
                         capture_output=True, check=True).stdout
    assert raw == art.manifest  # byte for byte: the registry keeps artifactType and our digest
    # one changed file: only that file's blob (and the config) goes up again
    (weights_dir / "config.json").write_text('{"model_type": "llama", "changed": true}')
    third = reg_mod.push_artifact(modelpack.build_artifact(plan, weights_dir), registry, repo, "changed")
    assert 0 < third.uploaded_bytes < 1000
