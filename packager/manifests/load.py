"""Entry points: parse -> validate -> complete, for model and hardware manifests."""
from __future__ import annotations

import difflib
import re

from packager.catalog import Accelerator, catalog
from packager.errors import UserError
from packager.facts import DEFAULT_RESOURCE_KEYS, Hardware, ModelFacts, Pool
from packager.manifests.complete import complete
from packager.manifests.validation_errors import validate
from packager.manifests.hardware_schema import AcceleratorSpec, HardwareManifest
from packager.manifests.model_schema import ModelManifest
from packager.manifests.resolve import resolve_model
from packager.yamlsource import YamlDoc, read_yaml

SHORTHAND = re.compile(r"^(?P<key>[a-z0-9][a-z0-9-]*)(?::(?P<count>[0-9]+)(?:x(?P<nodes>[0-9]+))?)?$")


def is_file_arg(arg: str) -> bool:
    """A hardware argument names a file (else it is a catalog shorthand)."""
    return arg.endswith((".yaml", ".yml")) or "/" in arg


def load_model(arg: str, adapters: tuple[str, ...] = ()) -> ModelFacts:
    """A model manifest path, or the name of a known manifest (packager.manifests.resolve);
    ``adapters``: ``--adapter NAME=SOURCE`` values, added to the manifest's ``adapters:``."""
    doc = read_yaml(resolve_model(arg))
    if adapters and isinstance(doc.data, dict):
        from packager.manifests.adapters import parse_adapter_arg

        extra = [parse_adapter_arg(a) for a in adapters]
        doc = YamlDoc(data={**doc.data, "adapters": list(doc.data.get("adapters") or []) + extra}, file=doc.file,
                      lines=doc.lines)
    return model_from_doc(doc)


def model_from_doc(doc: YamlDoc) -> ModelFacts:
    return complete(validate(doc, ModelManifest, "model"), doc)


def load_hardware(arg: str) -> Hardware:
    """A hardware manifest file, or the shorthand KEY[:COUNT[xNODES]] (e.g. nvidia-h100-sxm-80gb:8x2)."""
    return hardware_from_doc(read_yaml(arg) if is_file_arg(arg) else shorthand_doc(arg))


def hardware_from_doc(doc: YamlDoc) -> Hardware:
    return resolve_hardware(validate(doc, HardwareManifest, "hardware"), doc)


def nearest_keys(value: str, keys: list[str]) -> list[str]:
    """Catalog keys a mistyped one may mean: a family prefix ("nvidia-h100"), a part ("h100", "l4"), or a near spelling."""
    value = value.lower()
    return ([k for k in keys if k.startswith(value)] or [k for k in keys if value and value in k.split("-")]
            or [k for k in keys if value and value in k] or difflib.get_close_matches(value, keys, n=2, cutoff=0.5))


def shorthand_doc(arg: str) -> YamlDoc:
    m = SHORTHAND.match(arg.strip())
    where = f"hardware argument {arg!r}"
    if not m:
        key, _, count = arg.strip().lower().partition(":")
        guess = [g + (":" + count if re.fullmatch(r"[0-9]+(x[0-9]+)?", count) else "") for g in nearest_keys(key, list(catalog()))]
        raise UserError("is neither a YAML file nor the shorthand KEY[:COUNT[xNODES]]"
                        + (f"; did you mean {' or '.join(repr(g) for g in guess)}?" if guess else ""), file=where,
                        hint="e.g. `cpu`, `nvidia-l4:1`, `nvidia-h100-sxm-80gb:8x2`, or a path to a .yaml file")
    key = m["key"]
    count, nodes = int(m["count"] or 1), int(m["nodes"] or 1)
    data = {"name": f"{key}-x{count}{'x' + str(nodes) if nodes > 1 else ''}",
            "pools": [{"accelerator": key, "count": count, "nodes": nodes}]}
    return YamlDoc(data=data, file=where, lines={})  # no text behind it: errors name the argument, not a line


def _host_memory_gib() -> float:
    from packager.detect import host_memory_gib  # local: detection reads /proc only when needed
    return host_memory_gib()


def resolve_accelerator(value: str | AcceleratorSpec, doc: YamlDoc, index: int) -> Accelerator:
    if isinstance(value, AcceleratorSpec):
        return Accelerator(
            key=value.name, vendor=value.vendor, name=value.name, memory_gib=value.memory_gib,
            bandwidth_gbs=value.bandwidth_gbs, bf16_tflops=value.bf16_tflops, fp16_tflops=value.fp16_tflops,
            fp8_tflops=value.fp8_tflops, compute_capability=value.compute_capability, gfx_target=value.gfx_target,
            interconnect_gbs=value.interconnect_gbs, runtimes=tuple(value.runtimes), source="hardware manifest",
        )
    cat = catalog()
    if value not in cat:
        # A key's beginning ("nvidia-h100") names a family: offer its members before fuzzy matches.
        guess = nearest_keys(value, list(cat))
        raise UserError(
            f"unknown accelerator {value!r}" + (f"; did you mean {' or '.join(repr(g) for g in guess)}?" if guess else ""),
            file=doc.file, line=doc.line_of(("pools", index, "accelerator")), field=f"pools[{index}].accelerator",
            hint="use a catalog key (" + ", ".join(cat) + ") or give explicit specs (name, vendor, memory_gib, bandwidth_gbs, runtimes)",
        )
    return cat[value]


def resolve_hardware(manifest: HardwareManifest, doc: YamlDoc) -> Hardware:
    pools = []
    names = set()
    for i, p in enumerate(manifest.pools):
        if p.name in names:
            raise UserError(f"pool name {p.name!r} is used twice", file=doc.file, line=doc.line_of(("pools", i, "name")),
                            field=f"pools[{i}].name", hint="give every pool its own name")
        names.add(p.name)
        acc = resolve_accelerator(p.accelerator, doc, i)
        if acc.vendor == "cpu" and p.count != 1:
            raise UserError("a CPU node counts as one device", file=doc.file, line=doc.line_of(("pools", i, "count")),
                            field=f"pools[{i}].count", hint="use count: 1 (or omit it) and set nodes for more machines")
        memory = p.memory_gib or (_host_memory_gib() if acc.vendor == "cpu" else (acc.memory_gib or 0) * p.count * 2)
        pools.append(Pool(
            name=p.name, accelerator=acc, count=p.count, nodes=p.nodes, memory_gib=float(memory), cpu_cores=p.cpu_cores,
            cloud=p.cloud, resource_key=p.kubernetes.resource_key or DEFAULT_RESOURCE_KEYS.get(acc.vendor),
            node_selector=dict(p.kubernetes.node_selector), tolerations=tuple(dict(t) for t in p.kubernetes.tolerations),
        ))
    return Hardware(name=manifest.name, pools=tuple(pools))
