"""`packager init ADAPTER_DIR`: the `adapters:` entry of a model manifest, drafted from a PEFT adapter
directory's own files (adapter_config.json and the tensors' header): name, source path, rank,
target_modules, sha256 per file. Paste it into the base model's manifest, or pass the directory to
`--adapter NAME=DIR`; the base model's shapes are checked when a manifest names it."""
from __future__ import annotations

from pathlib import Path

import yaml

from packager.errors import UserError
from packager.init.draft import slug
from packager.init.local import _hash_files, source_path
from runtimes.lora_config import CONFIG, WEIGHTS, AdapterError, adapted_modules, read_config, safetensors_shapes


def is_adapter_dir(d: Path) -> bool:
    return (d / CONFIG).is_file() and not (d / "config.json").is_file()


def from_adapter_directory(d: Path, out: Path | None, name: str | None = None) -> str:
    try:
        cfg = read_config(d)
        if not (d / WEIGHTS).is_file():
            raise AdapterError("lora_path", f"{d} has no {WEIGHTS} (PEFT's safetensors file)")
        modules = adapted_modules(safetensors_shapes(d / WEIGHTS), cfg["r"])
    except AdapterError as e:
        raise UserError(f"not a servable PEFT LoRA adapter: {e}", file=str(d), field=e.field,
                        hint="pass a directory PEFT saved with save_pretrained (adapter_config.json + "
                             "adapter_model.safetensors), LoRA only") from None
    sha, sizes = _hash_files(d, [CONFIG, WEIGHTS])
    entry = {"name": name or slug(d.resolve().name),
             "source": {"path": source_path(d, out), "sha256": sha},
             "rank": cfg["r"], "target_modules": modules}
    from pydantic import ValidationError

    from packager.manifests.model_schema import Adapter

    try:
        Adapter.model_validate(entry)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(f"the drafted entry is not valid: {err['msg']}", file=str(d),
                        field=".".join(str(p) for p in err["loc"]),
                        hint="pass --served-name NAME: the model name clients send to use the adapter") from None
    base = cfg.get("base_model_name_or_path") or "not named in adapter_config.json"
    head = (f"# The `adapters:` entry for {d.name} (drafted by `packager init` from its files; {sizes[WEIGHTS]} bytes "
            f"of tensors).\n# Trained on: {base}. Add it to that model's manifest.\n")
    return head + yaml.safe_dump({"adapters": [entry]}, sort_keys=False)
