"""The air-gapped loop with the real tools: bundle (build, push, sign, SBOM), verify, import into an
empty registry with digests unchanged, verify there, enforce the image policy; then tamper."""
from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from packager.supply import oci_layout as L
from tests.supply.conftest import GGUF, assert_no_secret, assert_no_secret_in_layers, catalog, packager, secret_chunks
from tests.supply.tamper import manifest_of, relink, replace, resign, set_subject, statement_of


@pytest.fixture(autouse=True)
def _free_disk(tmp_path):
    """A tampered bundle is a full copy (hundreds of MiB): gone after each test, not kept by pytest."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_bundle_holds_every_part_named_by_digest(made):
    with tarfile.open(made["bundle"]) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))
    assert {"oci-layout", "index.json"} <= names
    parts = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    assert set(parts) == {"image", "weights", "chart", "plan", "sbom", "signatures", "release"}
    for m in parts.values():
        assert f"blobs/sha256/{m['digest'].removeprefix('sha256:')}" in names
        assert set(m["annotations"]) == {"org.opencontainers.image.ref.name"}  # nothing else for anyone to trust
    assert parts["weights"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    # the statement names every part by the digest the index gives it, and the signatures of the parts
    lay = L.unpack(made["bundle"], made["out"] / "peek")
    try:
        doc = statement_of(lay)
    finally:
        shutil.rmtree(made["out"] / "peek")
    subjects = {s["name"]: "sha256:" + s["digest"]["sha256"] for s in doc["subject"]}
    assert {p: subjects[p] for p in parts if p != "release"} == {p: m["digest"] for p, m in parts.items() if p != "release"}
    assert {"chart/archive", "chart/provenance", "plan/plan.json", "sbom/sbom.cdx.json", "signatures/weights",
            "signatures/image-1"} <= set(subjects)
    assert doc["predicate"]["identity"] == made["tag"].split(":")[0]
    assert doc["predicate"]["version"] == made["tag"].split(":")[1]


def test_verify_passes_and_says_what_it_checked(made, keys):
    proc = packager("verify", str(made["bundle"]), "--keys", str(keys.directory))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for what in ("release statement", "image digests", "weights digests", "weights signature", "image signature",
                 "chart signature", "sbom", "plan", GGUF):
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
    repo, tag = made["tag"].split(":")
    assert catalog(empty_registry) == [repo]  # one repository, named by the signed statement
    import hashlib

    for m in index["manifests"]:
        part = m["annotations"]["org.opencontainers.image.ref.name"]
        target = f"{repo}:{tag}" if part == "image" else f"{repo}:{tag}-{part}"
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{empty_registry}/{target}"],
                             capture_output=True, check=True).stdout
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


def _weights_layer(lay: L.Layout) -> dict:
    return manifest_of(lay, "weights")[1]["layers"][0]


def test_one_flipped_weight_byte_fails_naming_the_file(made, keys, tmp_path):
    def change(lay):
        path = lay.blob_path(_weights_layer(lay)["digest"])
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        replace(path, bytes(data))
    proc = packager("verify", str(_rewrite(made["bundle"], tmp_path, change)), "--keys", str(keys.directory))
    assert proc.returncode == 1
    assert f"FAIL  weights {GGUF}" in proc.stdout and GGUF in proc.stderr


def test_a_consistently_rewritten_weight_file_is_not_the_signed_one(made, keys, tmp_path):
    """Every digest fixed up to the index, the original file gone: verify still reads the weights manifest the
    statement names, so the file it names is missing (and the forged one beside it is never looked at)."""
    def change(lay):
        layer = _weights_layer(lay)
        path = lay.blob_path(layer["digest"])
        data = bytearray(path.read_bytes())
        data[1234] ^= 1
        relink(lay, "weights", layer["digest"], lay.add_bytes(bytes(data), layer["mediaType"]))
        path.unlink()
    proc = packager("verify", str(_rewrite(made["bundle"], tmp_path, change)), "--keys", str(keys.directory))
    assert proc.returncode == 1
    assert [line for line in proc.stdout.splitlines() if line.startswith("FAIL")] == \
        [line for line in proc.stdout.splitlines() if line.startswith(f"FAIL  weights {GGUF}") and "missing" in line]


def test_a_forged_image_signature_fails_even_in_a_signed_statement(made, keys, tmp_path):
    """A simple signature by another key, named by a statement re-signed with the release key: the image
    check itself refuses it (each part's own signature is checked, not only the statement's)."""
    from packager.supply import gpg
    from packager.supply.keys import init_keys

    other = init_keys(tmp_path / "other-keys")

    def change(lay):
        doc = statement_of(lay)
        identity = doc["predicate"]["image"]["signed_identity"]
        image = "sha256:" + next(s for s in doc["subject"] if s["name"] == "image")["digest"]["sha256"]
        old = "sha256:" + next(s for s in doc["subject"] if s["name"] == "signatures/image-1")["digest"]["sha256"]
        with gpg.temp_home() as home:
            gpg.import_keys(home, other.path("image-signing.key"))
            payload = json.dumps({"critical": {"identity": {"docker-reference": identity},
                                               "image": {"docker-manifest-digest": image},
                                               "type": "atomic container signature"}, "optional": {}}).encode()
            signed = gpg.run(home, "--pinentry-mode", "loopback", "--passphrase", "", "--sign", stdin=payload)
        forged = lay.add_bytes(signed, "application/vnd.dev.packager.simple-signing.v1")
        sigs = relink(lay, "signatures", old, forged)

        def edit(d):
            set_subject(d, "signatures/image-1", forged["digest"])
            set_subject(d, "signatures", sigs["digest"])
        resign(lay, keys, edit)
    proc = packager("verify", str(_rewrite(made["bundle"], tmp_path, change)), "--keys", str(keys.directory))
    assert proc.returncode == 1
    assert "ok    release statement" in proc.stdout and "FAIL  image signature" in proc.stdout, proc.stdout


def test_verify_bad_input_is_exit_2(keys, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\0" * 1024)
    proc = packager("verify", str(junk), "--keys", str(keys.directory))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = packager("verify", "not a ref", "--keys", str(keys.directory))
    assert proc.returncode == 2 and "neither a bundle file" in proc.stderr
