"""The imported release runs as pods, offline: podman pulls the image under the import's signedBy
policy, the modelcar init container checks the weights artifact's files by digest on the claim,
the server answers through the openai client. Then one weight byte and the image signature are
tampered with in the site registry: verify fails and deploy refuses, naming what failed."""
from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from answers import CAPITAL_Q  # a fact on any CPU (tests/answers.py)
from tests.supply.conftest import GGUF, blob_file, free_port, need, packager

PLAYED = ("Deployment", "ConfigMap", "Secret")


def _podman(*args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc


def as_pod(doc: dict) -> dict:
    """The Deployment's pod, as a Pod with restartPolicy OnFailure: podman 4.3 applies a Deployment's
    `Always` to init containers too, so the modelcar would be restarted forever after it succeeded
    (and kube play fails removing it). Everything else is the rendered pod spec, unchanged; the
    checksum annotation goes (podman holds Pod annotations to the 63-character label limit)."""
    if doc["kind"] != "Deployment":
        return doc
    template = doc["spec"]["template"]
    meta = {k: v for k, v in template["metadata"].items() if k != "annotations"}
    # keep the finished init container, so its log (what it verified) can be read
    meta["annotations"] = {"io.podman.annotations.init.container.type": "always"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {**meta, "name": doc["metadata"]["name"]},
            "spec": {**template["spec"], "restartPolicy": "OnFailure"}}


def _ready(port: int, timeout: float = 300) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health/ready", timeout=3) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


@pytest.fixture(scope="module")
def site(made, keys, site_registry, tmp_path_factory):
    """The bundle imported into the empty site registry; its refs, plan and signature files."""
    need("podman")
    tmp = tmp_path_factory.mktemp("site")
    proc = packager("import", str(made["bundle"]), "--registry", site_registry, "--keys", str(keys.directory),
                    "--signatures-dir", str(tmp / "sigs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    refs = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if line.split(":")[0] in
                ("image", "weights", "plan", "sbom", "chart", "signatures", "release"))
    plan_manifest = json.load(urllib.request.urlopen(urllib.request.Request(
        f"http://{site_registry}/v2/{refs['plan'].split('/', 1)[1].replace('@', '/manifests/')}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})))
    plan_blob = plan_manifest["layers"][0]["digest"]
    repo = refs["plan"].split("/", 1)[1].split("@")[0]
    (tmp / "plan.json").write_bytes(urllib.request.urlopen(f"http://{site_registry}/v2/{repo}/blobs/{plan_blob}").read())
    return {"host": site_registry, "refs": refs, "tag_ref": f"{site_registry}/{made['tag']}", "sigs": tmp / "sigs",
            "plan": tmp / "plan.json", "tmp": tmp}


def _deploy_args(site, keys, claim: str, port: int) -> list[str]:
    """The verified release itself: its signed chart and plan, image and weights pinned by the verified digests."""
    digest = site["refs"]["image"].split("@")[1]
    return ["deploy", "--image", f"{site['tag_ref']}@{digest}", "--set", "weights.oci.mount=modelcar",
            "--set", f"weights.oci.modelcar.existingClaim={claim}", "--set", f"containerPort={port}",
            "--keys", str(keys.directory), "--dry-run"]


@pytest.mark.docker
@pytest.mark.model_output
def test_release_plays_offline_and_answers(site, keys):
    host_port = site["host"].split(":")[1]
    regd = Path("/etc/containers/registries.d") / f"packager-test-{host_port}.yaml"
    claim, port = f"packager-test-weights-{host_port}", free_port()
    play = site["tmp"] / "play.yaml"
    try:
        # podman (like CRI-O) takes the image only with a valid signature: the import's policy and lookaside
        regd.parent.mkdir(parents=True, exist_ok=True)
        regd.write_text((site["sigs"] / "registries.d" / "packager.yaml").read_text())
        _podman("pull", "--signature-policy", str(site["sigs"] / "policy.json"), "--tls-verify=false", site["tag_ref"])
        # the claim, filled by the modelcar puller on this host (loopback); in the pod it is re-checked offline
        _podman("volume", "create", claim)
        mount = Path(_podman("volume", "inspect", claim, "--format", "{{.Mountpoint}}").stdout.strip())
        fill = subprocess.run(["python3", "-m", "packager.supply.pull", site["refs"]["weights"], "--dest", str(mount)],
                              capture_output=True, text=True)
        assert fill.returncode == 0, fill.stderr
        subprocess.run(["chown", "-R", "1000:1000", str(mount)], check=True)
        # deploy verifies, then renders against the site registry
        rendered = packager(*_deploy_args(site, keys, claim, port))
        assert rendered.returncode == 0, rendered.stderr[-3000:]
        assert "verified" in rendered.stderr
        docs = [as_pod(d) for d in yaml.safe_load_all(rendered.stdout) if d and d.get("kind") in PLAYED]
        pod = next(d for d in docs if d["kind"] == "Pod")["spec"]
        assert pod["initContainers"][0]["name"] == "modelcar"
        assert site["refs"]["weights"] in pod["initContainers"][0]["command"]
        play.write_text(yaml.safe_dump_all(docs))
        _podman("kube", "play", "--network", "slirp4netns", "--tls-verify=false", str(play))
        assert _ready(port), _podman("pod", "logs", "--tail", "40", check=False).stdout
        logs = _podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
        init = next(n for n in logs if n.endswith("-modelcar"))
        assert f"{GGUF} present, sha256 ok" in _podman("logs", init).stdout
        from openai import OpenAI

        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        answer = client.chat.completions.create(model=json.loads(site["plan"].read_text())["model"]["served_model_name"],
                                                messages=[{"role": "user", "content": CAPITAL_Q}],
                                                max_tokens=16, temperature=0)
        assert "Paris" in answer.choices[0].message.content
    finally:
        if play.exists():
            _podman("kube", "down", str(play), check=False)
        _podman("volume", "rm", "-f", claim, check=False)
        _podman("rmi", "-f", site["tag_ref"], check=False)
        regd.unlink(missing_ok=True)


def test_tampered_weights_and_signature_fail_verify_and_deploy(site, keys):
    weights_manifest = json.load(urllib.request.urlopen(urllib.request.Request(
        f"http://{site['host']}/v2/{site['refs']['weights'].split('/', 1)[1].replace('@', '/manifests/')}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})))
    blob = blob_file(site["host"], weights_manifest["layers"][0]["digest"])
    original = blob.read_bytes()
    try:
        data = bytearray(original)
        data[len(data) // 3] ^= 1
        blob.write_bytes(bytes(data))
        verify = packager("verify", site["tag_ref"], "--keys", str(keys.directory))
        assert verify.returncode == 1 and f"FAIL  weights {GGUF}" in verify.stdout
        deploy = packager(*_deploy_args(site, keys, "unused", 18000))
        assert deploy.returncode == 2 and "refusing to deploy" in deploy.stderr and GGUF in deploy.stderr
        # a chart rendered here from the plan, unverified, on the operator's word
        allowed = packager("deploy", "--plan", str(site["plan"]), "--image", site["refs"]["image"],
                           "--set", "weights.mode=oci", "--set", f"weights.oci.artifact={site['refs']['weights']}",
                           "--allow-unverified", "--dry-run")
        assert allowed.returncode == 0 and "WITHOUT signature checks" in allowed.stderr
    finally:
        blob.write_bytes(original)

    sigs_manifest = json.load(urllib.request.urlopen(urllib.request.Request(
        f"http://{site['host']}/v2/{site['refs']['signatures'].split('/', 1)[1].replace('@', '/manifests/')}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})))
    simple = next(ly for ly in sigs_manifest["layers"] if ly["mediaType"].endswith("simple-signing.v1"))
    sig_blob = blob_file(site["host"], simple["digest"])
    original = sig_blob.read_bytes()
    try:
        sig_blob.write_bytes(original[:-16] + bytes(b ^ 0xFF for b in original[-16:]))
        verify = packager("verify", site["tag_ref"], "--keys", str(keys.directory))
        assert verify.returncode == 1 and "FAIL  signatures signature-1" in verify.stdout
        deploy = packager(*_deploy_args(site, keys, "unused", 18000))
        assert deploy.returncode == 2 and "signature-1" in deploy.stderr
    finally:
        sig_blob.write_bytes(original)
    assert packager("verify", site["tag_ref"], "--keys", str(keys.directory)).returncode == 0
