"""`packager init SOURCE`: a model manifest drafted from the model's own files (facts, not a template).

SOURCE is a Hugging Face model directory, a .gguf file, or a Hub repo id ORG/NAME[@REVISION]; on a PEFT
LoRA adapter directory it drafts the model manifest's `adapters:` entry instead.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from packager.errors import UserError
from packager.init.draft import check, check_parameters, render


def init_manifest(source: str, revision: str | None = None, out: Path | None = None,
                  served_name: str | None = None) -> str:
    """The manifest's YAML text; it has validated and completed (its weights found) before it is returned.

    What it reads is checked: the weights' parameter count against config.json, the served name taken only
    from real metadata (else `served_name` must be given), paths relative to the manifest."""
    path = Path(source).expanduser()
    if revision and path.exists():
        raise UserError("--revision is for Hub repos; a local source is read as it is", field="--revision",
                        hint="drop --revision, or pass ORG/NAME to read the repo on the Hub")
    if path.is_dir():
        from packager.init.adapter import from_adapter_directory, is_adapter_dir
        if is_adapter_dir(path):  # a PEFT LoRA adapter: its `adapters:` entry, not a model manifest
            return from_adapter_directory(path, out, served_name)
        from packager.init.local import from_directory
        draft = from_directory(path, out)
    elif path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError("is a file but not a .gguf model", file=source, field="SOURCE",
                            hint="pass a .gguf file, a Hugging Face model directory (with config.json) or a Hub repo id")
        from packager.init.local import from_gguf
        draft = from_gguf(path, out)
    else:
        from packager.init.hub import REPO_ID, from_hub
        repo, _, at = source.partition("@")
        if not REPO_ID.match(repo) or source.startswith((".", "/", "~")):
            raise UserError("no such file or directory, and not a Hub repo id", file=source, field="SOURCE",
                            hint="pass a model directory, a .gguf file, or ORG/NAME[@REVISION] from the Hugging Face Hub")
        if at and revision and at != revision:
            raise UserError(f"two revisions given: {at!r} and --revision {revision!r}", field="--revision",
                            hint="give the revision once")
        draft = from_hub(repo, revision or at or None)
    where = str(out) if out is not None else "<stdout>"
    check_parameters(draft, source)
    if served_name:
        draft = replace(draft, served_model_name=served_name)
    elif not draft.served_model_name:
        raise UserError("the model's metadata names no served model name (the Hub repo id; config.json's "
                        "_name_or_path; a GGUF's general.source.*)", file=source, field="--served-name",
                        hint="pass --served-name ORG/NAME: the name clients send as `model`")
    text = render(draft)
    check(text, where)
    return text
