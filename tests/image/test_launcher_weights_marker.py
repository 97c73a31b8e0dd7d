"""The weights marker on a volume is trusted on its sha256, not on file sizes: a same-size change is
refused, however the file's dates are set back. The check is cached by each file's stat key
(inode, size, mtime ns, ctime ns) recorded when it was last hashed, so an unchanged claim restarts
without reading its weights; a file that moved (a copy, a restore) is hashed once more. Real files,
a real loopback mirror (the one in test_launcher_weights)."""
from __future__ import annotations

import json
import os
import shutil

import pytest

import launch_steps as launcher
from runtimes.layout import WEIGHTS_MARKER
from test_launcher_weights import DIGESTS, FILES, config, mirror

BIG = "model.safetensors"


@pytest.fixture
def claim(tmp_path):
    """A claim the launcher filled from the mirror: files and marker."""
    claim = tmp_path / "claim"
    seen: list = []
    with mirror(seen) as url:
        launcher.ensure_weights(config(tmp_path / "cache"), {"PACKAGER_MODEL_DIR": str(claim),
                                                             "PACKAGER_WEIGHTS_URL": url}, log=lambda m: None)
    assert sorted(seen) == sorted(FILES)
    return claim


def start(claim, tmp_path, **env) -> list[str]:
    """One start with no source to download from: the marker (or the files' digests) must do."""
    logs: list[str] = []
    launcher.ensure_weights(config(tmp_path / "cache"), {"PACKAGER_MODEL_DIR": str(claim), **env}, log=logs.append)
    return logs


def test_the_marker_records_each_files_digest_and_stat_key(claim):
    marker = json.loads((claim / WEIGHTS_MARKER).read_text())
    for rel, f in marker["files"].items():
        st = (claim / rel).stat()
        assert f["sha256"] == DIGESTS[rel] and f["size"] == st.st_size
        assert f["stat"] == [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def test_an_unchanged_claim_restarts_without_hashing(claim, tmp_path):
    logs = start(claim, tmp_path)
    assert any("nothing to download" in m for m in logs) and not any("changed on disk" in m for m in logs), logs


@pytest.mark.parametrize("redate", [False, True], ids=["plain", "dates set back"])
def test_a_same_size_change_is_refused(claim, tmp_path, redate):
    path = claim / BIG
    before = path.stat()
    body = bytearray(path.read_bytes())
    body[12345] ^= 0xFF  # one byte: the size stays
    with open(path, "r+b") as f:
        f.write(body)
    if redate:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    with pytest.raises(launcher.LaunchError, match=f"{BIG}: sha256"):
        start(claim, tmp_path)


def test_a_file_restored_with_the_same_bytes_is_hashed_once_then_trusted_again(claim, tmp_path):
    path = claim / BIG
    shutil.copy2(path, tmp_path / "copy")  # same bytes, same mtime: a new inode and ctime
    os.replace(tmp_path / "copy", path)
    logs = start(claim, tmp_path)
    assert [m for m in logs if "changed on disk" in m] == [f"weights: {BIG} changed on disk since its last check; "
                                                           "sha256 still matches"], logs
    assert not any("changed on disk" in m for m in start(claim, tmp_path))  # the marker learned the new key


def test_a_marker_from_before_stat_keys_is_hashed_once(claim, tmp_path):
    marker = json.loads((claim / WEIGHTS_MARKER).read_text())
    for f in marker["files"].values():
        f.pop("stat")
    marker["schema"] = 1
    (claim / WEIGHTS_MARKER).write_text(json.dumps(marker))
    assert sum("changed on disk" in m for m in start(claim, tmp_path)) == len(FILES)
    assert not any("changed on disk" in m for m in start(claim, tmp_path))


def test_verification_off_trusts_sizes_and_records_no_stat_key(claim, tmp_path):
    """PACKAGER_VERIFY_WEIGHTS=0 (the operator's word) keeps the old size-only check; a key recorded
    then would vouch for bytes nobody hashed."""
    (claim / WEIGHTS_MARKER).unlink()
    start(claim, tmp_path, PACKAGER_VERIFY_WEIGHTS="0")
    marker = json.loads((claim / WEIGHTS_MARKER).read_text())
    assert all("stat" not in f for f in marker["files"].values())
    assert sum("changed on disk" in m for m in start(claim, tmp_path)) == len(FILES)  # verifying again: hashed


def test_a_forged_stat_key_is_caught_only_when_verification_is_always(claim, tmp_path):
    """The key lives in the marker beside the files: whoever can rewrite a file can rewrite the marker too.
    The default trusts it (the trade-off for fast restarts); PACKAGER_VERIFY_WEIGHTS=always hashes anyway."""
    path = claim / BIG
    body = bytearray(path.read_bytes())
    body[7] ^= 0xFF
    path.write_bytes(body)
    marker = json.loads((claim / WEIGHTS_MARKER).read_text())
    st = path.stat()
    marker["files"][BIG]["stat"] = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    (claim / WEIGHTS_MARKER).write_text(json.dumps(marker))
    assert any("nothing to download" in m for m in start(claim, tmp_path))  # the forged key is believed
    with pytest.raises(launcher.LaunchError, match=f"{BIG}: sha256"):
        start(claim, tmp_path, PACKAGER_VERIFY_WEIGHTS="always")
