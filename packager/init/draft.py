"""A drafted model manifest: facts found in the model's files, written as YAML that validates at once."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import yaml

from packager.errors import UserError

DEFAULT_CONTEXT = 8192
# The compute precisions a checkpoint's dtype suggests, most preferred first.
PRECISIONS = {"bfloat16": ["bf16", "fp16", "fp32"], "float16": ["fp16", "bf16", "fp32"],
              "float32": ["bf16", "fp16", "fp32"]}


@dataclass(frozen=True)
class Draft:
    name: str
    served_model_name: str | None  # None: the model's metadata names none (init then asks for --served-name)
    source: dict  # path | repo+revision | package+file, format, sha256
    architecture: dict
    origin: str  # one line: where the facts came from
    license: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # file -> bytes (comments: the schema has no size field)
    notes: tuple[str, ...] = ()


def slug(text: str) -> str:
    """A manifest name (lowercase, digits, dots, dashes) from a repo, directory or file name."""
    s = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    return re.sub(r"-{2,}", "-", s)[:63].strip("-.") or "model"


def _serving(arch: dict) -> dict:
    positions = arch.get("max_position_embeddings") or DEFAULT_CONTEXT
    return {"context_length": min(positions, DEFAULT_CONTEXT), "objective": "throughput",
            "precisions": PRECISIONS.get(arch.get("weight_dtype", ""), PRECISIONS["bfloat16"]), "runtime": "auto"}


def _human(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def render(d: Draft) -> str:
    doc = {"name": d.name, "served_model_name": d.served_model_name}
    if d.license:
        doc["license"] = d.license
    doc["source"] = d.source
    from packager.manifests.model_schema import Architecture  # the schema's order reads best: family first

    doc["architecture"] = {k: d.architecture[k] for k in Architecture.model_fields if k in d.architecture}
    doc["serving"] = _serving(d.architecture)
    text = yaml.safe_dump(doc, sort_keys=False, width=120, default_flow_style=False)
    lines = []
    for line in text.splitlines():
        digest = re.search(r"\b([0-9a-f]{64})\b", line)
        name = next((f for f, h in d.source.get("sha256", {}).items() if digest and h == digest[1]), None)
        if name is not None and name in d.sizes:
            line += f"  # {d.sizes[name]:,} bytes"
        lines.append(line)
    total = sum(d.sizes.values())
    head = [f"# Written by `packager init` from {d.origin}.",
            "# Facts read from the model's files; `serving:` holds defaults to edit."]
    if d.sizes:
        head.append(f"# {len(d.sizes)} file(s), {_human(total)} in all.")
    head += [f"# {n}" for n in d.notes]
    return "\n".join(head + lines) + "\n"


def check(text: str, where: str) -> None:
    """The draft must validate and complete like any manifest: a failure here is a fact we could not find."""
    from packager.manifests.load import model_from_doc
    from packager.yamlsource import parse_yaml

    doc = parse_yaml(text, where)
    src = doc.data.get("source", {})
    if where != "<stdout>" and src.get("path") and not os.path.isabs(src["path"]):
        # Relative to the manifest, whose directory may not exist yet: normalise before looking.
        src["path"] = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(where)), src["path"]))
    try:
        model_from_doc(doc)
    except UserError as exc:
        raise UserError(f"the drafted manifest does not validate: {exc.message}", file=where, field=exc.field,
                        hint="the model's files lack this fact; write the manifest by hand "
                             "(`packager schema model`) or fix the model's config.json") from None


PARAMETER_TOLERANCE = 0.10  # weights vs config.json: rounding and small tensors (norms, biases) stay far below this


def check_parameters(d: Draft, where: str) -> None:
    """The weights' parameter count against what the config's shapes give: a missing shard or a config of
    another model shows as a gap; more than 10 % is exit 2 naming both numbers and the likely cause."""
    from packager.manifests.complete import ESTIMATED_FAMILIES, estimate_parameters

    a = d.architecture
    if a.get("family") not in ESTIMATED_FAMILIES or not a.get("parameters"):
        return
    shapes = dict(a)
    heads = shapes.get("attention_heads")
    if not (heads and shapes.get("hidden_size") and shapes.get("layers") and shapes.get("vocab_size")
            and shapes.get("intermediate_size")):
        return
    shapes.setdefault("head_dim", shapes["hidden_size"] // heads)
    shapes.setdefault("kv_heads", heads)
    expected, found = estimate_parameters(shapes), int(a["parameters"])
    if abs(found - expected) <= PARAMETER_TOLERANCE * expected:
        return
    config = (f"{a['layers']} layers x {a['hidden_size']} hidden, {a['intermediate_size']} intermediate, "
              f"{a['vocab_size']} vocabulary")
    cause = ("a shard is missing or truncated, or the config describes a bigger model" if found < expected else
             "the weights hold more than the config describes: extra tensors (a vision tower, a second model) "
             "or a config of a smaller model")
    raise UserError(f"the weights hold {found:,} parameters but the config ({config}) gives about {expected:,}: "
                    f"{cause}", file=where, field="architecture.parameters",
                    hint="check that every weights file is there and whole, and that config.json belongs to them")
