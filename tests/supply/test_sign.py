"""Signatures with the real tools, offline: model-signing (weights), skopeo simple signing checked by a
policy.json signedBy requirement (image), Helm provenance (chart). Each must also fail when it should."""
from __future__ import annotations

import json
import subprocess

import pytest

from packager.supply import sign
from packager.supply.keys import CHART_PUB, IMAGE_PUB, MODEL_PUB
from tests.supply.conftest import need


@pytest.fixture
def model(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    (d / "model.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 200)
    (d / "tokenizer.json").write_text("{}")
    return [(d / "model.gguf", "model.gguf"), (d / "tokenizer.json", "tokenizer.json")]


def test_weights_sign_and_verify_and_every_tamper_fails(keys, model, tmp_path):
    sig = sign.sign_weights(model, keys, tmp_path / "w.sig")
    root = sign.model_dir(model, tmp_path / "copy")
    sign.verify_weights(root, sig, keys.path(MODEL_PUB))
    # one flipped byte
    data = bytearray((root / "model.gguf").read_bytes())
    (root / "model.gguf").unlink()  # a hard link: write a new file, leave the source alone
    data[100] ^= 1
    (root / "model.gguf").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.gguf"):
        sign.verify_weights(root, sig, keys.path(MODEL_PUB))
    # an extra file
    root2 = sign.model_dir(model, tmp_path / "copy2")
    (root2 / "extra.bin").write_bytes(b"x")
    with pytest.raises(ValueError):
        sign.verify_weights(root2, sig, keys.path(MODEL_PUB))
    # another key
    from packager.supply.keys import init_keys

    other = init_keys(tmp_path / "other")
    with pytest.raises(ValueError):
        sign.verify_weights(sign.model_dir(model, tmp_path / "copy3"), sig, other.path(MODEL_PUB))


def _policy(tmp_path, scope: str, key) -> tuple:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "default": [{"type": "reject"}],
        "transports": {"docker": {scope: [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key)}]},
                       "dir": {"": [{"type": "insecureAcceptAnything"}]}}}))
    return policy


def _pull(ref, policy, regd, dest):
    return subprocess.run(["skopeo", "copy", "--policy", str(policy), "--registries.d", str(regd),
                           "--src-tls-verify=false", f"docker://{ref}", f"dir:{dest}"], capture_output=True, text=True)


def test_image_simple_signing_is_enforced_by_a_signedby_policy(keys, tiny_image, tmp_path):
    lookaside = tmp_path / "lookaside"
    regd = sign.registries_d(tmp_path / "registries.d", lookaside)
    host, repo = tiny_image.split("/", 1)[0], tiny_image.split("/", 1)[1].rsplit(":", 1)[0]
    policy = _policy(tmp_path, f"{host}/{repo}", keys.path(IMAGE_PUB))
    unsigned = _pull(tiny_image, policy, regd, tmp_path / "p0")
    assert unsigned.returncode != 0 and "signature" in unsigned.stderr.lower()

    sign.sign_image(tiny_image, keys, lookaside)
    sigs = list(lookaside.rglob("signature-1"))
    assert len(sigs) == 1 and "@sha256=" in str(sigs[0])
    ok = _pull(tiny_image, policy, regd, tmp_path / "p1")
    assert ok.returncode == 0, ok.stderr

    # a flipped byte in the signature file: rejected
    data = bytearray(sigs[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    sigs[0].write_bytes(bytes(data))
    bad = _pull(tiny_image, policy, regd, tmp_path / "p2")
    assert bad.returncode != 0

    # another key's policy: rejected
    from packager.supply.keys import init_keys

    other = init_keys(tmp_path / "other")
    sign.sign_image(tiny_image, keys, lookaside)  # a good signature again...
    wrong = _pull(tiny_image, _policy(tmp_path, f"{host}/{repo}", other.path(IMAGE_PUB)), regd, tmp_path / "p3")
    assert wrong.returncode != 0  # ...by a key this policy does not trust


def test_chart_provenance_signs_and_detects_a_changed_archive(keys, tmp_path):
    import helm_python as helm

    from packager.chart import write_chart
    from packager.planner import plan_files
    from tests.conftest import MODELS

    plan = plan_files(str(MODELS / "smollm2-135m-instruct.yaml"), "cpu").to_dict()
    archive = helm.package(str(write_chart(plan, tmp_path / "c")), destination=str(tmp_path))
    prov = sign.sign_chart(tmp_path / archive.rsplit("/", 1)[-1], keys)
    assert prov.read_text().startswith("-----BEGIN PGP SIGNED MESSAGE-----")
    assert "packager chart signing" in sign.verify_chart(tmp_path / archive.rsplit("/", 1)[-1], prov, keys.path(CHART_PUB))
    data = bytearray((tmp_path / archive.rsplit("/", 1)[-1]).read_bytes())
    data[-40] ^= 1
    (tmp_path / archive.rsplit("/", 1)[-1]).write_bytes(bytes(data))
    with pytest.raises(ValueError):
        sign.verify_chart(tmp_path / archive.rsplit("/", 1)[-1], prov, keys.path(CHART_PUB))


def test_sbom_lists_every_wheel_with_its_sha256(tmp_path):
    need("cyclonedx-py")
    import hashlib

    from packager.supply.sbom import make_sbom

    wheels = tmp_path / "wh"
    wheels.mkdir()
    names = {"demo_pkg-1.2.3-py3-none-any.whl": b"one", "Other_Thing-0.9-cp311-cp311-manylinux_2_17_x86_64.whl": b"two"}
    for name, data in names.items():
        (wheels / name).write_bytes(data)
    (wheels / "requirements.txt").write_text("demo-pkg\n")
    sbom = json.loads(make_sbom(tmp_path / "sbom.json", wheels).read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    got = {c["name"]: (c["version"], c["externalReferences"][0]["hashes"][0]["content"]) for c in sbom["components"]}
    assert got == {"demo-pkg": ("1.2.3", hashlib.sha256(b"one").hexdigest()),
                   "other-thing": ("0.9", hashlib.sha256(b"two").hexdigest())}
    # reproducible: the same wheels give the same bytes, so the digest an image label names holds
    assert make_sbom(tmp_path / "again.json", wheels).read_bytes() == (tmp_path / "sbom.json").read_bytes()
