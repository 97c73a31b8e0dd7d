"""The air-gapped loop with the real tools: bundle (build, push, sign, SBOM), verify, import into an
empty registry with digests unchanged, verify there, enforce the image policy; then tamper."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from packager.supply import oci_layout as L
from tests.supply.conftest import GGUF, assert_no_secret, assert_no_secret_in_layers, catalog, packager, secret_chunks


@pytest.fixture(autouse=True)
def _free_disk(tmp_path):
    """A tampered bundle is a full copy (hundreds of MiB): gone after each test, not kept by pytest."""
    yield
    import shutil

    shutil.rmtree(tmp_path, ignore_errors=True)


def test_bundle_holds_every_part_named_by_digest(made):
    with tarfile.open(made["bundle"]) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))
    assert {"oci-layout", "index.json"} <= names
    roles = {m["annotations"]["dev.packager.role"]: m for m in index["manifests"]}
    assert set(roles) == {"image", "weights", "chart", "plan", "sbom", "signatures"}
    for m in roles.values():
        assert f"blobs/sha256/{m['digest'].removeprefix('sha256:')}" in names
    assert roles["weights"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_verify_passes_and_says_what_it_checked(made, keys):
    proc = packager("verify", str(made["bundle"]), "--keys", str(keys.directory))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for what in ("image digests", "weights digests", "weights signature", "image signature", "chart signature",
                 "sbom", GGUF):
        assert what in proc.stdout, what
    assert "FAIL" not in proc.stdout


def test_no_private_key_material_anywhere(made, keys):
    chunks = secret_chunks(keys)
    assert_no_secret(made["bundle"].read_bytes(), chunks, "the bundle")
    assert_no_secret((made["proc"].stdout + made["proc"].stderr).encode(), chunks, "the bundle log")
    assert assert_no_secret_in_layers(made["bundle"], chunks) > 500 << 20  # the image's layers, uncompressed


def test_import_into_an_empty_registry_keeps_every_digest(made, keys, empty_registry, tmp_path):
    proc = packager("import", str(made["bundle"]), "--registry", empty_registry, "--keys", str(keys.directory),
                    "--signatures-dir", str(tmp_path / "sigs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with tarfile.open(made["bundle"]) as tar:
        index = json.load(tar.extractfile("index.json"))
    assert catalog(empty_registry)
    for m in index["manifests"]:
        target = m["annotations"]["dev.packager.target"]
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{empty_registry}/{target}"],
                             capture_output=True, check=True).stdout
        import hashlib

        assert "sha256:" + hashlib.sha256(raw).hexdigest() == m["digest"], target

    ref = f"{empty_registry}/{made['tag']}"
    checked = packager("verify", ref, "--keys", str(keys.directory))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "image signature" in checked.stdout and GGUF in checked.stdout

    # the policy import wrote: podman/skopeo/CRI-O accept the imported image only with its signature
    sigs = tmp_path / "sigs"
    pulled = subprocess.run(["skopeo", "copy", "--policy", str(sigs / "policy.json"), "--registries.d",
                             str(sigs / "registries.d"), "--src-tls-verify=false", f"docker://{ref}",
                             f"dir:{tmp_path / 'pulled'}"], capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    for sig in (sigs / "lookaside").rglob("signature-1"):
        sig.write_bytes(sig.read_bytes()[:-8] + b"tampered")
    refused = subprocess.run(["skopeo", "copy", "--policy", str(sigs / "policy.json"), "--registries.d",
                              str(sigs / "registries.d"), "--src-tls-verify=false", f"docker://{ref}",
                              f"dir:{tmp_path / 'pulled2'}"], capture_output=True, text=True)
    assert refused.returncode != 0


def _rewrite(bundle: Path, dest: Path, change) -> Path:
    """Unpack, let `change(layout)` alter it, re-pack: an attacker who rewrites the bundle."""
    lay = L.unpack(bundle, dest / "layout")
    change(lay)
    return L.pack(lay.root, dest / "tampered.tar")


def _flip_blob(lay: L.Layout, digest: str) -> None:
    path = lay.blob_path(digest)
    data = bytearray(path.read_bytes())
    path.unlink()  # it may be a hard link to the bundle's own extraction
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def _weights_layer(lay: L.Layout) -> dict:
    weights = lay.entries()["weights"]
    return lay.read_json(weights.digest)["layers"][0]


def test_one_flipped_weight_byte_fails_naming_the_file(made, keys, tmp_path):
    bad = _rewrite(made["bundle"], tmp_path, lambda lay: _flip_blob(lay, _weights_layer(lay)["digest"]))
    proc = packager("verify", str(bad), "--keys", str(keys.directory))
    assert proc.returncode == 1
    assert f"FAIL  weights {GGUF}" in proc.stdout and GGUF in proc.stderr


def _relink(lay: L.Layout, role: str, old: str, new_desc: dict) -> None:
    """Point `role`'s manifest at a new blob and fix every digest up to the index (a consistent forgery)."""
    entry = lay.entries()[role]
    manifest = lay.read_json(entry.digest)
    for ly in manifest["layers"]:
        if ly["digest"] == old:
            ly.update(digest=new_desc["digest"], size=new_desc["size"])
    desc = lay.add_bytes(json.dumps(manifest).encode(), entry.descriptor["mediaType"])
    lay.name(role, {**entry.descriptor, "digest": desc["digest"], "size": desc["size"]}, entry.target)


def test_a_consistently_rewritten_weight_file_fails_model_signing(made, keys, tmp_path):
    def change(lay):
        layer = _weights_layer(lay)
        data = bytearray(lay.blob_path(layer["digest"]).read_bytes())
        data[1234] ^= 1
        _relink(lay, "weights", layer["digest"], lay.add_bytes(bytes(data), layer["mediaType"]))
    proc = packager("verify", str(_rewrite(made["bundle"], tmp_path, change)), "--keys", str(keys.directory))
    assert proc.returncode == 1
    assert "FAIL  weights signature" in proc.stdout and GGUF in proc.stdout


def test_a_forged_image_signature_fails(made, keys, tmp_path):
    from packager.supply.keys import init_keys

    other = init_keys(tmp_path / "other-keys")

    def change(lay):
        sigs = lay.read_json(lay.entries()["signatures"].digest)
        simple = next(ly for ly in sigs["layers"] if ly["mediaType"] == "application/vnd.dev.packager.simple-signing.v1")
        # a real signature of the same manifest by another key
        forged = subprocess.run(["gpg", "--batch", "--homedir", str(tmp_path / "gh"), "--version"], capture_output=True)
        assert forged.returncode == 0
        from packager.supply import gpg

        with gpg.temp_home() as home:
            gpg.import_keys(home, other.path("image-signing.key"))
            payload = json.dumps({"critical": {"identity": {"docker-reference": simple["annotations"]["dev.packager.signed-identity"]},
                                               "image": {"docker-manifest-digest": lay.entries()["image"].digest},
                                               "type": "atomic container signature"}, "optional": {}}).encode()
            signed = gpg.run(home, "--pinentry-mode", "loopback", "--passphrase", "", "--sign", stdin=payload)
        _relink(lay, "signatures", simple["digest"], lay.add_bytes(signed, simple["mediaType"]))
    (tmp_path / "gh").mkdir(mode=0o700)
    proc = packager("verify", str(_rewrite(made["bundle"], tmp_path, change)), "--keys", str(keys.directory))
    assert proc.returncode == 1
    assert "FAIL  image signature" in proc.stdout, proc.stdout


def test_verify_bad_input_is_exit_2(keys, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\0" * 1024)
    proc = packager("verify", str(junk), "--keys", str(keys.directory))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = packager("verify", "not a ref", "--keys", str(keys.directory))
    assert proc.returncode == 2 and "neither a bundle file" in proc.stderr
