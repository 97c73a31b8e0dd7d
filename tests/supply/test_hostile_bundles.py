"""Hostile rewrites of a real bundle (the issue's cases): an edited plan with every digest consistent up to
the index, a chart archive titled outside verify's temp dir (relative and absolute), each refused by verify
and by import with nothing written outside the temp dir and nothing pushed; an index whose ref names and
annotations lie, which import ignores (it pushes only the names the signed statement makes); and a
hostile site registry, which `verify REF` and `deploy --keys` refuse without writing where it says."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from packager.supply import oci_layout as L, statement as S
from tests.supply.conftest import blob_file, catalog
from tests.supply.tamper import (assert_nothing_written, clone, manifest_of, put_manifest, relink, replace, resign,
                                 run_watched, statement_of)

ESCAPE_REL, ESCAPE_ABS = "escaped-rel.tgz", "escaped-abs.tgz"


@pytest.fixture(scope="module")
def base(made, tmp_path_factory):
    """The made bundle, unpacked once; every case is a hard-linked clone of it."""
    root = tmp_path_factory.mktemp("hostile-base")
    lay = L.unpack(made["bundle"], root / "layout")
    yield lay
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def case_dir(tmp_path):
    """A directory of its own (a throwaway registry may keep its storage in tmp_path)."""
    (tmp_path / "case").mkdir()
    yield tmp_path / "case"
    shutil.rmtree(tmp_path / "case", ignore_errors=True)  # each hostile bundle is a full copy (hundreds of MiB)


def _hostile(base: L.Layout, root, change):
    lay = clone(base.root, root / "layout")
    change(lay)
    out = L.pack(lay.root, root / "hostile.tar")
    shutil.rmtree(lay.root)
    return out


def _edit_plan(lay: L.Layout, keep_original: bool = False) -> None:
    """What the issue names: the served name and batch size the ConfigMap carries, with the plan manifest
    and the index re-digested; the original plan and its manifest removed (unless `keep_original`)."""
    entry, manifest = manifest_of(lay, "plan")
    old = manifest["layers"][0]
    plan = json.loads(lay.blob_path(old["digest"]).read_bytes())
    plan["model"]["served_model_name"] = "attacker/model"
    plan["selected"]["max_num_seqs"] = 4096
    relink(lay, "plan", old["digest"], lay.add_bytes(json.dumps(plan).encode(), old["mediaType"], old.get("annotations")))
    if not keep_original:
        lay.blob_path(old["digest"]).unlink()
        lay.blob_path(entry["digest"]).unlink()


def _chart_title(title: str):
    """The chart archive's (and .prov's) title aimed outside, the chart manifest replaced consistently."""
    def change(lay: L.Layout) -> None:
        entry, manifest = manifest_of(lay, "chart")
        for ly in manifest["layers"]:
            ly["annotations"][L.TITLE] = title if ly["mediaType"].endswith("tar+gzip") else title + ".prov"
        put_manifest(lay, "chart", manifest)
        lay.blob_path(entry["digest"]).unlink()
    return change


def _fails(proc) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]


@pytest.mark.parametrize("what", ["edited plan", "chart title outside", "chart title absolute"])
def test_hostile_bundle_is_refused_and_nothing_written_or_pushed(what, base, made, keys, empty_registry, case_dir):
    change = {"edited plan": _edit_plan, "chart title outside": _chart_title(f"../../../{ESCAPE_REL}"),
              "chart title absolute": _chart_title(str(case_dir / ESCAPE_ABS))}[what]
    bundle = _hostile(base, case_dir, change)
    part = "plan" if what == "edited plan" else "chart"
    proc, _ = run_watched("verify", str(bundle), "--keys", str(keys.directory), root=case_dir)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ok    release statement" in proc.stdout
    assert _fails(proc) == [line for line in _fails(proc) if line.startswith(f"FAIL  {part} manifest")] != [], proc.stdout
    assert "(the statement's) is missing" in proc.stdout
    assert_nothing_written(case_dir, {"hostile.tar"})
    imported, _ = run_watched("import", str(bundle), "--registry", empty_registry, "--keys", str(keys.directory),
                              "--signatures-dir", str(case_dir / "sigs"), root=case_dir)
    assert imported.returncode == 1 and "nothing pushed" in imported.stderr, imported.stderr
    assert catalog(empty_registry) == []
    assert_nothing_written(case_dir, {"hostile.tar"})


def _lying_index(lay: L.Layout) -> None:
    """An edited plan beside the signed one, named `plan`; then ref names swapped (image <-> weights,
    chart <-> plan), import targets and titles aimed elsewhere."""
    _edit_plan(lay, keep_original=True)
    index = lay.index()
    swap = {"image": "weights", "weights": "image", "chart": "plan", "plan": "chart"}
    for m in index["manifests"]:
        ref = m["annotations"][L.REF_NAME]
        m["annotations"] = {L.REF_NAME: swap.get(ref, ref), "dev.packager.role": swap.get(ref, ref),
                            "dev.packager.target": "victim/app:latest", L.TITLE: "../../../victim"}
    replace(lay.root / "index.json", json.dumps(index).encode())


@pytest.fixture(scope="module")
def site(base, made, keys, site_registry, tmp_path_factory):
    """The bundle with a lying index, imported under a prefix: what lands is what the statement names."""
    root = tmp_path_factory.mktemp("lying")
    bundle = _hostile(base, root, _lying_index)
    proc, _ = run_watched("verify", str(bundle), "--keys", str(keys.directory), root=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # nothing it ignores can fail it
    proc, _ = run_watched("import", str(bundle), "--registry", f"{site_registry}/site", "--keys", str(keys.directory),
                          "--signatures-dir", str(root / "sigs"), root=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root / "hostile.tar").unlink()
    refs = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if line.split(":")[0] in (*S.PARTS, S.REF))
    yield {"host": site_registry, "refs": refs, "tag_ref": f"{site_registry}/site/{made['tag']}", "root": root}
    shutil.rmtree(root, ignore_errors=True)


def test_a_lying_index_pushes_only_the_signed_names(site, base, made):
    repo, tag = made["tag"].split(":")
    assert catalog(site["host"]) == [f"site/{repo}"]  # not victim/app, not a second repository
    st = statement_of(base)
    digests = {s["name"]: "sha256:" + s["digest"]["sha256"] for s in st["subject"]}
    for part in S.PARTS:
        assert site["refs"][part] == f"{site['host']}/site/{repo}@{digests[part]}"
    tags = json.loads(subprocess.run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{site['host']}/site/{repo}"],
                                     capture_output=True, check=True).stdout)["Tags"]
    assert sorted(tags) == sorted([tag] + [f"{tag}-{p}" for p in (*S.PARTS[1:], S.REF)])


def test_deploy_installs_the_signed_chart_pinned_to_the_verified_digests(site, base, keys, case_dir):
    proc, _ = run_watched("deploy", "--keys", str(keys.directory), "--image", site["tag_ref"], "--set",
                          "weights.oci.mount=modelcar", "--dry-run", root=case_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deploy: verified" in proc.stderr
    assert proc.stdout.startswith("# install: packager deploy --keys ")  # its install command first (issue 25)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    repo = site["tag_ref"].rsplit(":", 1)[0]
    assert pod["containers"][0]["image"] == site["refs"]["image"] == f"{repo}@{site['refs']['image'].split('@')[1]}"
    assert site["refs"]["weights"] in pod["initContainers"][0]["command"]
    # Every image anything installs is the verified digest: the tag it was verified under may move after.
    specs = [d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]
             for d in docs if d["kind"] in ("Deployment", "Pod")]
    images = {c["image"] for s in specs for c in s.get("initContainers", []) + s["containers"]}
    assert images == {site["refs"]["image"]}, images
    plan = json.loads(base.blob_path(manifest_of(base, "plan")[1]["layers"][0]["digest"]).read_bytes())
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "plan.json" in (d.get("data") or {}))
    assert json.loads(config["data"]["plan.json"])["selected"]["name"] == plan["selected"]["name"]
    assert_nothing_written(case_dir, set())
    refused, _ = run_watched("deploy", "smollm2-135m-instruct", "--keys", str(keys.directory), "--image", site["tag_ref"],
                             "--dry-run", root=case_dir)
    assert refused.returncode == 2 and "MODEL would change it" in refused.stderr


def _swap_registry_blob(host, digest: str, data: bytes):
    path = blob_file(host, digest)
    original = path.read_bytes()
    path.write_bytes(data)
    return lambda: path.write_bytes(original)


def test_a_hostile_registry_is_refused_without_writing_where_it_says(site, base, keys, case_dir):
    """The site registry serves, for the chart's signed digest, a manifest whose titles reach outside."""
    _, manifest = manifest_of(base, "chart")
    for ly in manifest["layers"]:
        ly["annotations"][L.TITLE] = str(case_dir / ESCAPE_ABS) if ly["mediaType"].endswith("gzip") else f"../../../{ESCAPE_REL}"
    restore = _swap_registry_blob(site["host"], site["refs"]["chart"].split("@")[1], json.dumps(manifest).encode())
    try:
        verify, _ = run_watched("verify", site["tag_ref"], "--keys", str(keys.directory), root=case_dir)
        assert verify.returncode == 1 and "FAIL  chart manifest" in verify.stdout, verify.stdout
        deploy, _ = run_watched("deploy", "--keys", str(keys.directory), "--image", site["tag_ref"], "--dry-run",
                                root=case_dir)
        assert deploy.returncode == 2 and "refusing to deploy" in deploy.stderr and "chart manifest" in deploy.stderr
        assert_nothing_written(case_dir, set())
    finally:
        restore()


def test_an_older_statement_served_under_the_tag_is_refused(site, base, keys, case_dir):
    """A validly signed statement of another version, pushed over REPO:TAG-release in the site registry."""
    lay = clone(base.root, case_dir / "layout")
    resign(lay, keys, lambda d: d["predicate"].update(version="0.0.1-old", image={"signed_identity": d["predicate"]["image"]
                                                        ["signed_identity"].rsplit(":", 1)[0] + ":0.0.1-old"}))
    dest = f"docker://{site['tag_ref']}-{S.REF}"
    push = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    subprocess.run([*push, f"oci:{lay.root}:{S.REF}", dest], check=True, capture_output=True)
    try:
        verify, _ = run_watched("verify", site["tag_ref"], "--keys", str(keys.directory), root=case_dir)
        assert verify.returncode == 1 and "serves release" in verify.stdout and "0.0.1-old" in verify.stdout
        deploy, _ = run_watched("deploy", "--keys", str(keys.directory), "--image", site["tag_ref"], "--dry-run",
                                root=case_dir)
        assert deploy.returncode == 2 and "serves release" in deploy.stderr
    finally:
        subprocess.run([*push, f"oci:{base.root}:{S.REF}", dest], check=True, capture_output=True)
    assert run_watched("verify", site["tag_ref"], "--keys", str(keys.directory), root=case_dir)[0].returncode == 0
