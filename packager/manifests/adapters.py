"""Complete a manifest's LoRA adapters: find local ones, read rank and target modules from their
``adapter_config.json``, check them against the model (names, base model, modules, tensor
shapes, sha256), and say what to fix with file, line and field when they do not fit.

The adapter rules themselves (what PEFT config is served, which tensors fit which module) are
``runtimes/lora_config.py``'s, shared with the fallback runtime."""
from __future__ import annotations

from pathlib import Path

from packager.errors import UserError
from packager.facts import AdapterFacts
from packager.manifests.model_schema import Adapter, ModelManifest
from packager.manifests.packages import PackageMissing, package_file
from packager.yamlsource import YamlDoc
from runtimes.digests import sha256_file
from runtimes.lora_config import (CONFIG, MAX_RANK, MODULES, WEIGHTS, AdapterError, check_shapes, module_dims,
                                  read_config, safetensors_shapes)


def parse_adapter_arg(value: str) -> dict:
    """``--adapter NAME=SOURCE``: SOURCE is a local directory, ``REPO@REVISION`` (a Hub repo at a pinned
    revision) or ``oci://REF@sha256:...``; returns a manifest ``adapters:`` entry."""
    name, sep, source = value.partition("=")
    if not sep or not name or not source:
        raise UserError(f"--adapter {value!r} is not NAME=SOURCE", file="--adapter",
                        hint="e.g. --adapter sql=./adapters/sql or --adapter sql=org/sql-lora@<commit>")
    if source.startswith("oci://"):
        return {"name": name, "source": {"oci": source.removeprefix("oci://")}}
    if Path(source).expanduser().exists() or source.startswith((".", "/", "~")):
        return {"name": name, "source": {"path": str(Path(source).expanduser().resolve())}}
    repo, at, revision = source.partition("@")
    if not at:
        raise UserError(f"--adapter {name}: {source!r} is neither a local directory nor REPO@REVISION", file="--adapter",
                        hint="pin a Hub adapter to a revision: org/name@<commit sha or tag>")
    return {"name": name, "source": {"repo": repo, "revision": revision}}


def _locate(a: Adapter, doc: YamlDoc, i: int) -> Path | None:
    src = a.source
    if src.path:
        p = Path(src.path)
        p = p if p.is_absolute() else Path(doc.file).parent / p
        if not p.is_dir():
            raise UserError(f"adapter directory not found at {p}", file=doc.file,
                            line=doc.line_of(("adapters", i, "source", "path")), field=f"adapters[{i}].source.path",
                            hint="point it at a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)")
        return p.resolve()
    if src.package:
        try:
            found = package_file(src.package, lambda f: f.name == CONFIG
                                 and f.parent.as_posix().endswith(src.file.strip("/")))
        except PackageMissing:
            return None
        if found is not None:
            return found.parent.resolve()
        raise UserError(f"package {src.package!r} has no adapter directory {src.file!r}", file=doc.file,
                        line=doc.line_of(("adapters", i, "source", "file")), field=f"adapters[{i}].source.file",
                        hint=f"list its files with `pip show -f {src.package}`")
    return None  # a Hub repo or an OCI artifact: not on this machine


def complete_adapters(manifest: ModelManifest, doc: YamlDoc, arch: dict) -> tuple[AdapterFacts, ...]:
    out: list[AdapterFacts] = []
    names = {manifest.api_name}
    dims = module_dims(arch["hidden_size"], arch["intermediate_size"], arch["attention_heads"], arch["kv_heads"],
                       arch["head_dim"])
    for i, a in enumerate(manifest.adapters):

        def fail(msg: str, key: str, hint: str, line_key: tuple = ()) -> UserError:
            return UserError(msg, file=doc.file, line=doc.line_of(("adapters", i, *(line_key or (key,)))),
                             field=f"adapters[{i}].{key}", hint=hint)

        if a.name in names:
            raise fail(f"adapter name {a.name!r} is used twice (or is the base model's name)", "name",
                       "give every adapter its own name, other than the model's served name")
        names.add(a.name)
        local = _locate(a, doc, i)
        rank, targets = a.rank, list(a.target_modules or [])
        if local is not None:
            try:
                cfg = read_config(local)
            except AdapterError as e:
                raise UserError(str(e), file=str(local / CONFIG), field=e.field,
                                hint=f"fix the adapter, or drop adapters[{i}] from {doc.file}") from None
            if rank is not None and rank != cfg["r"]:
                raise fail(f"rank {rank} but {local / CONFIG} says r={cfg['r']}", "rank", "omit rank: it is read from the adapter")
            rank = cfg["r"]
            base = str(cfg.get("base_model_name_or_path") or "")
            known = {manifest.api_name.lower(), str(manifest.source.repo or "").lower()} - {""}
            if "/" in base and not base.startswith((".", "/")) and base.lower() not in known:
                raise fail(f"the adapter was trained on {base}, not on this model ({', '.join(sorted(known))})",
                           "source", "serve it with its own base model", ("source",))
            try:
                pairs = check_shapes(safetensors_shapes(local / WEIGHTS), rank, dims, arch["layers"])
            except AdapterError as e:
                raise UserError(f"{e} (adapter {a.name})", file=str(local / WEIGHTS), field=e.field,
                                hint="the adapter does not fit this model's shapes: train it on this model") from None
            found = [m for m in MODULES if any(mod == m for _, mod in pairs)]
            if targets and set(targets) != set(found):
                raise fail(f"target_modules {targets} but the adapter's tensors adapt {found}", "target_modules",
                           "omit target_modules: they are read from the adapter")
            targets = found
            for fname, want in a.source.sha256.items():
                got = sha256_file(local / fname) if (local / fname).is_file() else "missing"
                if got != want.lower():
                    raise fail(f"{fname}: sha256 {got} != {want.lower()}", f"source.sha256.{fname}",
                               "the adapter changed since its digest was written: check it, then update sha256",
                               ("source", "sha256"))
        if rank is None or not targets:
            raise fail("rank and target_modules are needed: the adapter is not on this machine", "rank",
                       "write `rank:` and `target_modules:` from its adapter_config.json")
        if rank > MAX_RANK:
            raise fail(f"rank {rank} is above vLLM's largest ({MAX_RANK})", "rank", f"use an adapter of rank <= {MAX_RANK}")
        bad = sorted(set(targets) - set(MODULES))
        if bad:
            raise fail(f"target_modules {bad} cannot be adapted", "target_modules", f"use only {', '.join(MODULES)}")
        source = {"kind": a.source.kind, **a.source.model_dump(exclude_none=True)}
        out.append(AdapterFacts(a.name, source, int(rank), tuple(m for m in MODULES if m in targets),
                                str(local) if local else None))
    return tuple(out)
