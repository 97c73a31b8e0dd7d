"""Drafts from files on this machine: a Hugging Face model directory or one GGUF file."""
from __future__ import annotations

import json
import os
import re
import struct
from importlib import metadata
from pathlib import Path

from packager.errors import UserError
from packager.init.draft import Draft, slug
from runtimes import st_config

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
# A GGUF file name ends in its quantization (".Q4_1", "-f16"): not part of the model's name.
QUANT_SUFFIX = re.compile(r"[.-](i?q\d[\w]*|f16|f32|bf16)$", re.IGNORECASE)


def _hash_files(base: Path, rels: list[str]) -> tuple[dict, dict]:
    from runtimes.digests import sha256_file

    return ({r: sha256_file(base / r) for r in rels}, {r: (base / r).stat().st_size for r in rels})


def source_path(p: Path, out: Path | None) -> str:
    """Relative to the manifest, always (it travels with the model): to --out's directory, or to the current
    directory when the manifest goes to stdout (where `> model.yaml` puts it)."""
    base = out.resolve().parent if out is not None else Path.cwd().resolve()
    return os.path.relpath(p.resolve(), base)


HUB_URL = re.compile(r"^https?://(?:www\.)?huggingface\.co/([\w.-]+/[\w.-]+?)(?:/.*)?$")
GGUF_SOURCE_KEYS = ("general.source.huggingface.repository", "general.source.url", "general.source.repo_url",
                    "general.url", "general.repo_url")


def served_name_from_gguf(meta: dict) -> str | None:
    """The Hub repo a GGUF says it came from (llama.cpp's general.source.* keys), else None: a file name or a
    basename is not a served name, so init asks for one."""
    from packager.init.hub import REPO_ID

    for key in GGUF_SOURCE_KEYS:
        value = str(meta.get(key) or "").strip()
        m = HUB_URL.match(value)
        if m:
            return m[1]
        if key.endswith("repository") and REPO_ID.match(value):
            return value
    return None


def served_name_from_config(cfg: dict) -> str | None:
    """config.json's `_name_or_path` when it is a Hub repo id (transformers writes it on save_pretrained of a
    Hub model); a local path or nothing gives None."""
    from packager.init.hub import REPO_ID

    name = str(cfg.get("_name_or_path") or "")
    return name if REPO_ID.match(name) and not name.startswith((".", "/", "~")) else None


def check_index(d: Path) -> None:
    """model.safetensors.index.json names every shard: a missing one is exit 2 naming it."""
    index = d / "model.safetensors.index.json"
    if not index.is_file():
        return
    try:
        wanted = set((json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}).values())
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise UserError(f"not a valid safetensors index: {exc}", file=str(index), field="SOURCE") from None
    missing = sorted(f for f in wanted if not (d / f).is_file())
    if missing:
        raise UserError(f"{len(missing)} of {len(wanted)} weight shards named by {index.name} are missing: "
                        + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""), file=str(d), field="SOURCE",
                        hint="download the missing shards (an interrupted download leaves them out)")


def front_matter_license(readme: Path) -> str | None:
    """`license:` from a model card's YAML front matter, as the Hub reads it."""
    import yaml

    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    try:
        meta = yaml.safe_load(m[1]) if m else None
    except yaml.YAMLError:
        return None
    value = meta.get("license") if isinstance(meta, dict) else None
    return str(value) if value else None


def safetensors_parameters(files: list[Path]) -> int:
    """Exact parameter count from the safetensors headers (8-byte length + JSON): no tensor is read."""
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for key, info in header.items():
            # BERT checkpoints carry `embeddings.position_ids`, an int64 buffer, not a parameter
            if key != "__metadata__" and not key.endswith("position_ids"):
                count = 1
                for d in info["shape"]:
                    count *= d
                total += count
    return total


def config_facts(cfg: dict) -> dict:
    """Architecture facts from a config.json (transformers 5 writes `dtype` where 4 wrote `torch_dtype`)."""
    from packager.manifests.complete import HF_KEYS

    text = cfg.get("text_config", cfg)
    facts = {mine: text[theirs] for theirs, mine in HF_KEYS.items() if text.get(theirs) is not None}
    dtype = text.get("torch_dtype") or text.get("dtype") or cfg.get("torch_dtype") or cfg.get("dtype")
    facts.pop("weight_dtype", None)
    if dtype in ("float32", "bfloat16", "float16"):
        facts["weight_dtype"] = dtype
    return facts


def from_directory(d: Path, out: Path | None) -> Draft:
    cfg_file = d / "config.json"
    if not cfg_file.is_file():
        raise UserError("no config.json here: not a Hugging Face model directory", file=str(d), field="SOURCE",
                        hint="pass a directory saved with save_pretrained, a .gguf file, a Hub repo id ORG/NAME, "
                             "or a PEFT adapter directory (adapter_config.json)")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config.json is not valid JSON: {exc}", file=str(cfg_file), field="SOURCE") from None
    shards = sorted(d.glob("*.safetensors"))
    if not shards:
        hint = "for GGUF pass the .gguf file itself" if any(d.glob("*.gguf")) else "save the model with safe_serialization"
        raise UserError("no *.safetensors weights in the directory", file=str(d), field="SOURCE", hint=hint)
    check_index(d)
    arch = config_facts(cfg)
    arch["parameters"] = safetensors_parameters(shards)
    rels = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and ".cache" not in p.parts)
    sha, sizes = _hash_files(d, rels)
    notes = () if any((d / t).is_file() for t in TOKENIZER_FILES) else (
        "warning: no tokenizer files (tokenizer.json / tokenizer.model): the server cannot start without one",)
    embed = None
    if st_config.is_encoder(st_config.reader(d)):  # a sentence-transformers model: say so, with its pooling
        mode, normalize = st_config.pooling(st_config.reader(d))
        embed = {"pooling": {"mode": mode, "normalize": normalize},
                 "context_length": st_config.max_seq_length(st_config.reader(d))}
    return Draft(name=slug(d.resolve().name), served_model_name=served_name_from_config(cfg), embed=embed,
                 source={"path": source_path(d, out), "format": "safetensors", "sha256": sha},
                 architecture=arch, origin=f"the directory {d.resolve().name}/ (config.json, {len(shards)} safetensors file(s))",
                 license=front_matter_license(d / "README.md") or cfg.get("license"), sizes=sizes, notes=notes)


def _owning_package(path: Path) -> str | None:
    """The installed distribution that ships this file, if any: the manifest then names the package, not a path."""
    real = path.resolve()
    for dist in metadata.distributions():
        for f in dist.files or ():
            if f.name == real.name and Path(dist.locate_file(f)).resolve() == real:
                return dist.metadata["Name"]
    return None


def from_gguf(f: Path, out: Path | None) -> Draft:
    from runtimes.gguf_meta import GGUFError, architecture_from_header, read_gguf_header

    try:
        header = read_gguf_header(f)
    except (GGUFError, OSError) as exc:
        raise UserError(f"not a readable GGUF file: {exc}", file=str(f), field="SOURCE",
                        hint="pass a .gguf model file, a Hugging Face model directory or a Hub repo id") from None
    arch = architecture_from_header(header)
    meta = header.metadata
    base = QUANT_SUFFIX.sub("", f.stem)
    package = _owning_package(f)
    source = {"package": package, "file": f.name} if package else {"path": source_path(f, out)}
    sha, sizes = _hash_files(f.parent, [f.name])
    source.update(format="gguf", sha256=sha)
    return Draft(name=slug(base), served_model_name=served_name_from_gguf(meta), source=source,
                 architecture=arch, license=meta.get("general.license"), sizes=sizes,
                 origin=f"the GGUF file {f.name}" + (f" (installed package {package})" if package else ""),
                 notes=(f"GGUF file type {meta.get('general.file_type')}: the fallback runtime reads its "
                        "quantized weights; vLLM profiles want safetensors",))
