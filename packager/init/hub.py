"""Drafts from a Hugging Face Hub repo at a revision: the file list and config.json only, never weights.

`HF_ENDPOINT` points huggingface_hub at a mirror (or, in tests, a local endpoint); `HF_TOKEN` opens gated repos.
"""
from __future__ import annotations

import json
import re

from packager.errors import UserError
from packager.init.draft import Draft, slug
from packager.init.local import TOKENIZER_FILES, config_facts

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _hub_error(repo: str, revision: str, exc: Exception) -> UserError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(exc, RevisionNotFoundError):
        return UserError(f"revision {revision!r} not found in {repo}", field="--revision",
                         hint="pass a branch, tag or commit sha that exists in the repo")
    if isinstance(exc, GatedRepoError):
        return UserError(f"{repo} is gated", field="SOURCE", hint="accept its terms on the Hub and set HF_TOKEN")
    if isinstance(exc, RepositoryNotFoundError):
        return UserError(f"no model repo {repo!r} on the Hub (or it is private)", field="SOURCE",
                         hint="check the repo id ORG/NAME; set HF_TOKEN for private repos")
    # Offline, DNS, TLS, 5xx: one line, no traceback (the token never appears in it).
    return UserError(f"cannot reach the Hub for {repo}: {type(exc).__name__}", field="SOURCE",
                     hint="check the network or HF_ENDPOINT, or download the model and run init on the directory")


def from_hub(repo: str, revision: str | None) -> Draft:
    try:
        from huggingface_hub import HfApi, hf_hub_download
    except ModuleNotFoundError:
        from packager.extras import missing_extra_error

        err = missing_extra_error("huggingface_hub", "hub")
        err.hint += ", or pass a local directory or .gguf file"
        raise err from None
    rev = revision or "main"
    try:
        info = HfApi().model_info(repo, revision=rev, files_metadata=True)
        sha = info.sha or rev
        config_path = hf_hub_download(repo, "config.json", revision=sha)  # a few kB; weights are never fetched
    except Exception as exc:  # huggingface_hub raises many kinds; each becomes one clear line
        from huggingface_hub.errors import EntryNotFoundError

        if isinstance(exc, EntryNotFoundError):
            raise UserError(f"{repo} has no config.json at {rev}", field="SOURCE",
                            hint="init reads transformers-style repos; for GGUF-only repos download the .gguf and "
                                 "run init on the file") from None
        raise _hub_error(repo, rev, exc) from None
    with open(config_path, encoding="utf-8") as fh:
        cfg = json.load(fh)
    siblings = {s.rfilename: s for s in info.siblings or ()}
    weights = sorted(f for f in siblings if f.endswith(".safetensors"))
    if not weights:
        raise UserError(f"{repo} at {sha[:12]} has no *.safetensors files", field="SOURCE",
                        hint="init reads safetensors repos; for GGUF download the .gguf and run init on the file")
    arch = config_facts(cfg)
    total = getattr(getattr(info, "safetensors", None), "total", None)
    if total:
        arch["parameters"] = int(total)  # the Hub counts them from the headers
    sha256 = {f: s.lfs.sha256 for f, s in siblings.items() if getattr(s, "lfs", None) and s.lfs.sha256}
    sizes = {f: int(s.size) for f, s in siblings.items() if f in sha256 and s.size is not None}
    card = getattr(info, "card_data", None)
    license_ = (card.get("license") if card else None) or next(
        (t.split(":", 1)[1] for t in info.tags or () if t.startswith("license:")), None)
    notes = () if any(t in siblings for t in TOKENIZER_FILES) else (
        "warning: the repo has no tokenizer files (tokenizer.json / tokenizer.model)",)
    source = {"repo": repo, "revision": sha, "format": "safetensors"}
    if sha256:
        source["sha256"] = sha256
    return Draft(name=slug(repo.split("/")[1]), served_model_name=repo, source=source, architecture=arch,
                 license=license_, sizes=sizes, notes=notes,
                 origin=f"the Hub repo {repo} at {sha} ({rev}; config.json and the file list, no weights)")
