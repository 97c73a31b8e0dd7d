"""Weights for the chosen profile: baked in the image, or on the weights volume (the chart's
PVC), downloaded there once per claim.

Every replica of a ReadWriteMany claim may start at the same moment: one holds an flock on
`.packager-weights.lock` in the target directory and downloads; the others wait on the lock,
then find the marker (`.packager-weights.json`: source, each file's digest, size and stat key, written
last by atomic rename) and start at once. A restart finds the marker too and downloads nothing.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from packager.planner.checkpoint import dir_in_image, profile_source
from runtimes import download
from runtimes.digests import sha256_file, verify_digests
from runtimes.launch.settings import LaunchError
from runtimes.layout import CACHE_DIR, ENV_MODEL_DIR, ENV_WEIGHTS_MODE, MODEL_DIR, WEIGHTS_LOCK, WEIGHTS_MARKER

Log = Callable[[str], None]
SOURCE_KEYS = ("kind", "repo", "revision", "file", "url")


@dataclass(frozen=True)
class WeightsSpec:
    """One profile's checkpoint: where it sits in the image, its files (relative to `dir`,
    with sha256 where recorded; empty: none recorded) and where it comes from."""
    mode: str  # baked | volume
    dir: str  # in-image directory: MODEL_DIR, or a quantized variant's variant_dir()
    files: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)


def weights_mode(config: dict, env: Mapping[str, str]) -> str:
    """The chart's weights.mode (PACKAGER_WEIGHTS_MODE), else the image's: a volume mounted over a
    baked image's model dir hides its weights, so the volume must then be filled like any other."""
    mode = env.get(ENV_WEIGHTS_MODE, "").strip().lower() or (config.get("weights") or {}).get("mode", "baked")
    if mode not in ("baked", "volume"):
        raise LaunchError(f"{ENV_WEIGHTS_MODE}={mode!r}: expected baked or volume")
    return mode


def spec_for(profile: dict | None, plan: dict, config: dict, env: Mapping[str, str] | None = None) -> WeightsSpec:
    """The selected profile's checkpoint: the image's (image.json) when it is the one the image was
    built for, else the profile's own pinned source (a variant) or the model's."""
    w = config.get("weights") or {}
    mode = weights_mode(config, env or {})
    want = dir_in_image(profile)
    if w.get("dir", MODEL_DIR) == want:
        return WeightsSpec(mode, want, dict(w.get("files") or {}), dict(w.get("source") or {}))
    model = plan.get("model") or {}
    # a hand-written plan's variant with no pinned source falls back to the model's, as it always did
    full = profile_source(model, profile) or model.get("source") or {}
    return WeightsSpec(mode, want, dict(full.get("sha256") or {}), {k: v for k, v in full.items() if k in SOURCE_KEYS})


def adapter_specs(config: dict, env: Mapping[str, str]) -> list[tuple[WeightsSpec, dict]]:
    """Each LoRA adapter (image.json's ``adapters``) as a checkpoint of its own, with the environment
    its download uses: a plain mirror (PACKAGER_WEIGHTS_URL) holds it at its place under the model dir."""
    mode = weights_mode(config, env)
    out = []
    for a in config.get("adapters") or []:
        spec = WeightsSpec(mode, a["dir"], dict(a.get("files") or {}), dict(a.get("source") or {}))
        aenv = dict(env)
        if env.get("PACKAGER_WEIGHTS_URL", "").strip():
            aenv["PACKAGER_WEIGHTS_URL"] = env["PACKAGER_WEIGHTS_URL"].strip().rstrip("/") + a["dir"][len(MODEL_DIR):]
        out.append((spec, aenv))
    return out


def base_dir(config: dict, env: Mapping[str, str]) -> str:
    """Where MODEL_DIR's contents are on this start: the image (baked), the weights volume
    (PACKAGER_MODEL_DIR, or a writable / filled MODEL_DIR), else the cache (a bare `docker run`)."""
    if weights_mode(config, env) == "baked":
        return MODEL_DIR
    explicit = env.get(ENV_MODEL_DIR, "").strip()
    if explicit:
        return explicit.rstrip("/") or "/"
    mounted = Path(MODEL_DIR)
    if mounted.is_dir() and (os.access(mounted, os.W_OK) or any(mounted.iterdir())):
        return MODEL_DIR
    return str(Path(config.get("cache_dir", CACHE_DIR)) / "model")


def target_dir(spec: WeightsSpec, base: str) -> Path:
    return Path(base + spec.dir[len(MODEL_DIR):])


# -- the marker ----------------------------------------------------------------------------------

def _source_id(spec: WeightsSpec) -> dict:
    return {k: spec.source.get(k) for k in ("kind", "repo", "revision", "file") if spec.source.get(k)}


def read_marker(target: Path) -> dict | None:
    try:
        return json.loads((target / WEIGHTS_MARKER).read_text())
    except (OSError, ValueError):
        return None


def stat_key(path: Path) -> list[int]:
    """What the marker remembers of a file it hashed: inode, size, mtime and ctime in ns. Rewriting,
    replacing or re-dating a file moves at least one (ctime moves on every write and utime), so a
    start hashes only what changed since the last check. The device number is left out: a claim
    mounts under another one on every node."""
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def marker_ok(target: Path, spec: WeightsSpec, env: Mapping[str, str] | None = None, log: Log | None = None,
              check: bool = True) -> bool:
    """The marker matches what this profile wants and every file it lists is there at its size and,
    with `check` (and PACKAGER_VERIFY_WEIGHTS not 0), at its sha256: hashed again only when the file's
    stat key differs from the one recorded when it was last hashed (then recorded anew)."""
    m = read_marker(target)
    if not m or not isinstance(m.get("files"), dict):
        return False
    recorded = {rel: f.get("sha256") for rel, f in m["files"].items()}
    if spec.files:
        if any(want and recorded.get(rel) != want for rel, want in spec.files.items()) or set(spec.files) - set(recorded):
            return False
    elif m.get("source") != _source_id(spec):
        return False
    verify = (env or {}).get("PACKAGER_VERIFY_WEIGHTS", "1").strip().lower()
    hashing = check and verify != "0"
    # The key is only as trustworthy as whoever can write the claim (it sits in the marker beside the
    # files); "always" hashes every file on every start instead.
    always = verify == "always"
    rehashed = False
    for rel, f in m["files"].items():
        path = target / rel
        if not path.is_file() or path.stat().st_size != f.get("size"):
            return False
        if hashing and f.get("sha256") and (always or f.get("stat") != stat_key(path)):
            if sha256_file(path) != f["sha256"]:
                return False
            rehashed = rehashed or f.get("stat") != stat_key(path)
            f["stat"] = stat_key(path)
            if log and not always:
                log(f"weights: {rel} changed on disk since its last check; sha256 still matches")
    if rehashed:
        _write(target, m)
    return True


def write_marker(target: Path, spec: WeightsSpec, files: dict[str, str | None], checked: bool = True) -> None:
    """Written last, by rename: a half-finished download never looks complete. A file with no recorded
    digest is hashed now, so a later start can tell it changed; `checked`: every digest was just
    verified, so each file's stat key is recorded (without it the next verifying start hashes all)."""
    body = {"schema": 2, "source": _source_id(spec), "files": {}}
    for rel, sha in sorted(files.items()):
        path = target / rel
        entry = {"sha256": sha or sha256_file(path), "size": path.stat().st_size}
        body["files"][rel] = {**entry, "stat": stat_key(path)} if checked or not sha else entry
    _write(target, body)


def _write(target: Path, body: dict) -> None:
    tmp = target / (WEIGHTS_MARKER + ".tmp")
    try:
        tmp.write_text(json.dumps(body, indent=1) + "\n")
        os.replace(tmp, target / WEIGHTS_MARKER)
    except OSError:
        pass  # a read-only claim: complete as it is; the next start hashes what it must again


# -- inspection (the dry run) and the real thing -----------------------------------------------------

def would_download_from(spec: WeightsSpec, env: Mapping[str, str]) -> str | None:
    url = env.get("PACKAGER_WEIGHTS_URL", "").strip().rstrip("/")
    if url:
        return url if spec.files else None  # a plain mirror needs the file list
    if spec.source.get("kind") == "huggingface" and spec.source.get("repo"):
        return f"hf://{spec.source['repo']}@{spec.source.get('revision') or 'main'}"
    return None


def inspect(spec: WeightsSpec, target: Path, env: Mapping[str, str]) -> dict:
    """What a start would find and do, touching nothing."""
    missing = sorted(rel for rel in spec.files if not (target / rel).is_file())
    if spec.files:
        present = not missing
    else:
        present = marker_ok(target, spec, check=False) or (target.is_dir() and any(p for p in target.iterdir()
                                                                       if not p.name.startswith(".")))
    return {"mode": spec.mode, "dir": str(target), "present": present, "missing": missing,
            "would_download_from": None if present or spec.mode == "baked" else would_download_from(spec, env)}


def _complete(target: Path, spec: WeightsSpec, env: Mapping[str, str], log: Log) -> bool:
    if marker_ok(target, spec, env, log):
        log(f"weights: {target} complete (marker {WEIGHTS_MARKER}); nothing to download")
        return True
    if spec.files and all((target / rel).is_file() for rel in spec.files):
        checked = env.get("PACKAGER_VERIFY_WEIGHTS", "1") != "0"
        if checked:
            try:
                verify_digests(target, {rel: want for rel, want in spec.files.items() if want})
            except ValueError as exc:
                raise LaunchError(f"weights at {target}: {exc}") from None
        log(f"weights: mounted at {target}")
        try:  # the next start hashes only what changes
            write_marker(target, spec, {rel: want or None for rel, want in spec.files.items()}, checked)
        except OSError:
            pass  # a read-only volume: fine, it is complete
        return True
    if not spec.files and not would_download_from(spec, env) and inspect(spec, target, env)["present"]:
        log(f"weights: mounted at {target} (no checksums recorded)")
        return True
    return False


def ensure(spec: WeightsSpec, target: Path, env: Mapping[str, str], log: Log = print) -> None:
    """Make `target` hold the profile's checkpoint: at most one download per claim, ever."""
    if spec.mode == "baked":
        return  # verified by sha256sum when the image was built
    if _complete(target, spec, env, log):
        return
    source = would_download_from(spec, env)
    if source is None:
        raise LaunchError(f"weights mode is volume but {target} does not hold {sorted(spec.files) or 'the weights'}.\n"
                          f"  fix: mount the weights there (-v DIR:{MODEL_DIR}:ro), or set PACKAGER_WEIGHTS_URL "
                          "(and PACKAGER_WEIGHTS_TOKEN) to download them into the weights volume")
    try:
        target.mkdir(parents=True, exist_ok=True)
        lock = open(target / WEIGHTS_LOCK, "a")
    except OSError as exc:
        raise LaunchError(f"the weights volume at {target} lacks the weights and cannot be written: {exc.strerror}.\n"
                          "  fix: mount it read-write for the first start (chart: weights.volume.readOnly=false), "
                          "or fill the claim beforehand") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"weights: another pod is downloading into {target}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(target, spec, env, log):  # the pod we waited for finished it
            return
        got = _download(spec, target, env, log)
        write_marker(target, spec, got)
        log(f"weights: {len(got)} file(s) in {target}; marker written")


def _download(spec: WeightsSpec, target: Path, env: Mapping[str, str], log: Log) -> dict[str, str | None]:
    url = env.get("PACKAGER_WEIGHTS_URL", "").strip().rstrip("/")
    src = spec.source
    try:
        token = (env.get("PACKAGER_WEIGHTS_TOKEN") or env.get("HF_TOKEN")
                 or download.token_file(env.get("HF_TOKEN_PATH")))
        if url:  # a plain mirror: resumable across restarts (.part files on the volume)
            for rel, want in spec.files.items():
                download.from_url(f"{url}/{rel}", target / rel, want, token, log)
            return {rel: want or sha256_file(target / rel) for rel, want in spec.files.items()}
        endpoint = env.get("HF_ENDPOINT") or download.HUB
        revision = src.get("revision") or "main"
        if spec.files:  # the Hub's own client: pinned revision, its redirect and token rules
            download.from_hub(src["repo"], revision, spec.files, target, token, endpoint, log)
            return {rel: want or None for rel, want in spec.files.items()}
        return {rel: None for rel in download.snapshot(src["repo"], revision, target, token, endpoint, log)}
    except download.DownloadError as exc:
        raise LaunchError(str(exc)) from None
