"""`packager keys init`: three real key pairs, private parts 0600, never overwritten, fingerprints printed."""
from __future__ import annotations

import json
import stat

from packager.supply.keys import CHART_KEY, IMAGE_KEY, MODEL_KEY, PRIVATE, PUBLIC, load_keys
from tests.supply.conftest import assert_no_secret, need, secret_chunks


def test_keys_init_writes_pairs_with_private_parts_0600(run_cli, tmp_path):
    need("gpg")
    out = tmp_path / "keys"
    code, stdout, stderr = run_cli("keys", "init", "--out", str(out))
    assert code == 0, stderr
    for name in PRIVATE:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    for name in PUBLIC:
        assert (out / name).stat().st_size > 100
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert b"BEGIN PRIVATE KEY" in (out / MODEL_KEY).read_bytes()
    assert b"BEGIN PGP PRIVATE KEY BLOCK" in (out / IMAGE_KEY).read_bytes()
    keys = load_keys(out, private=True)
    index = json.loads((out / "keys.json").read_text())
    # the fingerprints printed are the keys' own (EC: sha256 of the public key; OpenPGP: gpg's)
    for fpr in (keys.model, keys.image, keys.chart):
        assert fpr in stdout
    assert index["image_signing"]["fingerprint"] == keys.image and len(keys.image) == 40
    assert index["model_signing"]["fingerprint"] == keys.model
    # nothing secret on the screen or in keys.json
    chunks = secret_chunks(keys)
    assert_no_secret((stdout + stderr).encode(), chunks, "the command's output")
    assert_no_secret((out / "keys.json").read_bytes(), chunks, "keys.json")


def test_keys_init_refuses_to_overwrite(run_cli, tmp_path):
    need("gpg")
    out = tmp_path / "keys"
    assert run_cli("keys", "init", "--out", str(out))[0] == 0
    before = (out / CHART_KEY).read_bytes()
    code, _, stderr = run_cli("keys", "init", "--out", str(out))
    assert code == 2
    assert "refusing to overwrite" in stderr and "model-signing.key" in stderr and "Traceback" not in stderr
    assert (out / CHART_KEY).read_bytes() == before


def test_signing_refuses_group_readable_private_keys(tmp_path, run_cli):
    need("gpg")
    out = tmp_path / "keys"
    assert run_cli("keys", "init", "--out", str(out))[0] == 0
    (out / MODEL_KEY).chmod(0o644)
    import pytest
    from packager.errors import UserError

    with pytest.raises(UserError, match="readable by group or others"):
        load_keys(out, private=True)
    load_keys(out, private=False)  # verify needs the public parts only


def test_verify_without_public_keys_is_bad_input(run_cli, tmp_path):
    bundle = tmp_path / "x.tar"
    bundle.write_bytes(b"not a tar")
    code, _, stderr = run_cli("verify", str(bundle), "--keys", str(tmp_path / "nokeys"))
    assert code == 2 and "lacks" in stderr and "Traceback" not in stderr


def test_bundle_and_import_bad_input_exit_2_writing_nothing(run_cli, tmp_path, keys):
    out = tmp_path / "b.tar"
    code, _, stderr = run_cli("bundle", "smollm2-135m-instruct", "--hardware", "cpu", "--keys", str(tmp_path / "none"),
                              "--out", str(out))
    assert code == 2 and "lacks" in stderr and not out.exists()
    code, _, stderr = run_cli("bundle", "smollm2-135m-instruct", "--hardware", "cpu", "--keys", str(keys.directory),
                              "--out", str(tmp_path / "b.zip"))
    assert code == 2 and ".tar" in stderr
    code, _, stderr = run_cli("import", str(tmp_path / "missing.tar"), "--registry", "127.0.0.1:5999",
                              "--keys", str(keys.directory))
    assert code == 2 and "no such bundle" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli("import", str(tmp_path / "missing.tar"), "--registry", "127.0.0.1:5999",
                              "--keys", str(tmp_path / "none"))
    assert code == 2 and "lacks" in stderr
