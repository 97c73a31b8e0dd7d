"""A bundle with a LoRA adapter (issue 22, item 5), with the real tools: the adapter's files are layers of
the signed weights artifact (model-signing covers them), the signed release statement lists the adapter
with its files' digests, verify says so, and an adapter file changed after signing fails verify."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from packager.adapter_files import rel_dir
from packager.supply import oci_layout as L, statement as S
from runtimes.digests import sha256_file
from tests.lora_adapters import SMOL, write_adapter
from tests.supply.conftest import BASE, packager
from tests.supply.tamper import manifest_of, replace, statement_of

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def lora_bundle(keys, registry, tmp_path_factory):
    from tests.image.conftest import require_engine
    from tests.supply.conftest import need

    require_engine()
    need("skopeo", "gpg")
    out = tmp_path_factory.mktemp("lora-bundle")
    adapter = write_adapter(out / "sql", SMOL, 5, rank=4, targets=("q_proj", "v_proj"))
    tag = f"packager-test/smollm2-lora-supply:{os.getpid()}-oci"
    proc = packager("bundle", "smollm2-135m-instruct", "--hardware", "cpu", "--keys", str(keys.directory),
                    "--out", str(out / "model.bundle.tar"), "--base-image", BASE, "--tag", tag, "--registry", registry,
                    "--adapter", f"sql={adapter}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    yield {"bundle": out / "model.bundle.tar", "adapter": adapter}
    subprocess.run(["docker", "image", "rm", "-f", tag, f"{registry}/{tag}"], capture_output=True)
    shutil.rmtree(out, ignore_errors=True)


def test_the_signed_statement_lists_the_adapter_and_verify_checks_it(lora_bundle, keys, tmp_path):
    lay = L.unpack(lora_bundle["bundle"], tmp_path / "layout")
    want = {f: sha256_file(lora_bundle["adapter"] / f) for f in ("adapter_config.json", "adapter_model.safetensors")}
    st = S.parse(statement_of(lay))
    assert st.model["adapters"] == [{"name": "sql", "dir": rel_dir("sql"), "sha256": want}]
    layers = {ly["annotations"]["org.cncf.model.filepath"]: ly["digest"] for ly in manifest_of(lay, "weights")[1]["layers"]}
    assert {f"{rel_dir('sql')}/{f}": f"sha256:{d}" for f, d in want.items()}.items() <= layers.items()
    proc = packager("verify", str(lora_bundle["bundle"]), "--keys", str(keys.directory))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok    adapter sql" in proc.stdout
    assert f"{rel_dir('sql')}/adapter_model.safetensors" in proc.stdout  # in the model-signing line


def test_an_adapter_file_changed_after_signing_fails_verify(lora_bundle, keys, tmp_path):
    lay = L.unpack(lora_bundle["bundle"], tmp_path / "layout")
    rel = f"{rel_dir('sql')}/adapter_model.safetensors"
    layer = next(ly for ly in manifest_of(lay, "weights")[1]["layers"]
                 if ly["annotations"]["org.cncf.model.filepath"] == rel)
    path = lay.blob_path(layer["digest"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    replace(path, bytes(data))
    tampered = L.pack(lay.root, tmp_path / "tampered.tar")
    proc = packager("verify", str(tampered), "--keys", str(keys.directory))
    assert proc.returncode == 1
    assert f"FAIL  weights {rel}" in proc.stdout, proc.stdout
