"""A plan's LoRA adapters as files to package: found on this machine, hashed once, checked against
the manifest's sha256, placed at ``runtimes.layout.adapter_dir(name)`` under the model dir.

They join the weights' file set (``local_weights.Weights.extra``), so everything that carries the
weights carries them the same way: the baked image's weights layer and its ``sha256sum --check``,
the ModelPack artifact of ``--weights oci`` (one layer per file), and model-signing over that
artifact's files. Under ``--weights volume`` nothing is copied: the launcher downloads each adapter
into the claim beside the weights (image.json's ``adapters``), so only Hub adapters work there.
Sits below both the image build and supply, like ``local_weights``."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from packager.errors import UserError
from packager.local_weights import Weights, locate
from runtimes.digests import sha256_file
from runtimes.layout import MODEL_DIR, adapter_dir
from runtimes.lora_config import CONFIG, WEIGHTS

SERVED_FILES = (CONFIG, WEIGHTS)  # what the runtimes read from an adapter directory


def rel_dir(name: str) -> str:
    """The adapter's directory relative to the model dir: "adapters/<digest of name>"."""
    return adapter_dir(name)[len(MODEL_DIR) + 1:]


def adapters_of(plan: dict) -> list[dict]:
    return list((plan.get("model") or {}).get("adapters") or [])


def _root(a: dict, i: int) -> Path:
    src = a.get("source") or {}
    field = f"adapters[{i}].source"
    if a.get("local_path"):
        return Path(a["local_path"])
    if src.get("repo"):  # downloaded here, as baked weights are: the image build itself has no network
        try:
            return locate({"kind": "huggingface", "repo": src["repo"], "revision": src.get("revision")})
        except UserError as e:  # the weights' message, about this adapter
            raise UserError(f"adapter {a['name']!r}: {e.message}", field=f"{field}.repo",
                            hint="set HF_TOKEN for a gated repo, or download the adapter and pass --adapter NAME=DIR") from None
    if src.get("oci"):
        raise UserError(f"adapter {a['name']!r} is an OCI artifact ({src['oci']}); packager does not pull "
                        "adapter artifacts at build time", field=f"{field}.oci",
                        hint=f"pull it into a directory (oras pull {src['oci']} -o DIR) and pass --adapter {a['name']}=DIR")
    raise UserError(f"adapter {a['name']!r} is not on this machine", field=field,
                    hint="install its package or point source.path at the adapter directory")


def adapter_weights(plan: dict) -> tuple[tuple[str, str, Path], ...]:
    """(rel under the model dir, sha256, path here) of every served file of every adapter; a digest
    the manifest records that the file does not have is an error (exit 2) naming the adapter."""
    out = []
    for i, a in enumerate(adapters_of(plan)):
        root = _root(a, i)
        recorded = (a.get("source") or {}).get("sha256") or {}
        for fname in SERVED_FILES:
            path = root / fname
            if not path.is_file():
                raise UserError(f"adapter {a['name']!r}: {path} is missing", field=f"adapters[{i}].source",
                                hint="an adapter directory holds adapter_config.json and adapter_model.safetensors")
            digest = sha256_file(path)
            want = str(recorded.get(fname) or "").lower()
            if want and want != digest:
                raise UserError(f"adapter {a['name']!r}: {fname} has sha256 {digest}, the manifest records {want}",
                                field=f"adapters[{i}].source.sha256.{fname}",
                                hint="the adapter changed since its digest was written: check it, then update sha256")
            out.append((f"{rel_dir(a['name'])}/{fname}", digest, path))
    return tuple(out)


def with_adapters(w: Weights, plan: dict) -> Weights:
    """The weights plus every adapter's files (nothing changes without adapters)."""
    files = adapter_weights(plan)
    if not files:
        return w
    return replace(w, files=w.files + tuple((rel, d) for rel, d, _ in files),
                   extra=w.extra + tuple((rel, p) for rel, _, p in files))


def launcher_entries(plan: dict, w: Weights | None) -> list[dict]:
    """image.json's ``adapters``: per adapter its directory, files (relative to it, with sha256) and the
    Hub source the launcher downloads it from under --weights volume."""
    digests = dict(w.files) if w else {}
    out = []
    for a in adapters_of(plan):
        src = a.get("source") or {}
        rd = rel_dir(a["name"])
        files = {rel[len(rd) + 1:]: d for rel, d in digests.items() if rel.startswith(rd + "/")}
        if not files:  # not hashed here (volume mode): what the manifest records, if anything
            files = {k: str(v).lower() for k, v in (src.get("sha256") or {}).items() if k in SERVED_FILES}
        hub = {"kind": "huggingface", "repo": src["repo"], "revision": src.get("revision")} if src.get("repo") else {}
        out.append({"name": a["name"], "dir": adapter_dir(a["name"]), "files": files, "source": hub})
    return out


def check_volume_mode(plan: dict) -> None:
    """--weights volume: the launcher can only download Hub adapters; a local one would be missing in the pod."""
    for i, a in enumerate(adapters_of(plan)):
        if not (a.get("source") or {}).get("repo"):
            raise UserError(f"adapter {a['name']!r} is local, and --weights volume puts no files in the image: the "
                            "launcher downloads adapters from the Hub only", field=f"adapters[{i}].source",
                            hint="build with --weights baked (or oci), or give a Hub source: --adapter NAME=REPO@REVISION")


def statement_entries(files: list[tuple[str, str]], plan: dict) -> list[dict]:
    """The release statement's ``model.adapters``: each adapter's name, directory and files' sha256,
    from the weights artifact's (rel, sha256) pairs."""
    out = []
    for a in adapters_of(plan):
        rd = rel_dir(a["name"])
        got = {rel[len(rd) + 1:]: d.removeprefix("sha256:") for rel, d in files if rel.startswith(rd + "/")}
        out.append({"name": a["name"], "dir": rd, "sha256": dict(sorted(got.items()))})
    return out
