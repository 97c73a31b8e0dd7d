"""The deploy gate: `packager deploy` installs only what verified, or says loudly that it did not check.

`deploy --keys DIR --image HOST:PORT/REPO:TAG` verifies the imported release there (the statement,
then every part by its signed digest: packager.supply.fetch) and hands back what deploy installs:
the signed chart archive (the bytes whose digest the statement names, copied under a fixed name),
the signed plan, and values that pin the image and the weights artifact to the verified digests
in that repository. A chart rendered here from a plan is never what a verified deploy installs.

Without --keys, a chart whose weights come from an OCI artifact (weights.mode=oci) is refused
unless --allow-unverified says to deploy it anyway.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from packager.errors import UserError

HINT = "re-import the bundle (`packager import`), check the keys, or deploy without verifying (--allow-unverified)"


@dataclass(frozen=True)
class Verified:
    chart: Path  # the signed chart archive
    plan: dict  # the signed plan
    pins: dict  # chart values: image and weights pinned by the verified digests


def check_unverified(chart_dir: Path, allow_unverified: bool, log=print) -> None:
    """A chart rendered here from a plan: OCI weights need a verified release (--keys) or --allow-unverified."""
    values = yaml.safe_load((Path(chart_dir) / "values.yaml").read_text(encoding="utf-8")) or {}
    if (values.get("weights") or {}).get("mode", "baked") != "oci":
        return
    if allow_unverified:
        log("deploy: --allow-unverified: image and weights are deployed WITHOUT signature checks")
        return
    raise UserError("refusing to deploy weights from an OCI artifact without verifying them", field="--keys",
                    hint="deploy the imported release: --keys DIR --image HOST:PORT/REPO:TAG; or pass --allow-unverified")


def parse_image(ref: str) -> tuple[str, str | None]:
    """HOST:PORT/REPO:TAG[@sha256:...] -> (HOST:PORT/REPO:TAG, the digest the user pinned, if any)."""
    tagged, _, digest = ref.partition("@")
    return tagged, digest or None


def verified_release(image: str | None, keys_dir: Path, dest: Path, log=print) -> Verified:
    from packager.supply.fetch import parse_release_ref, verify_ref
    from packager.supply.keys import load_keys

    if not image:
        raise UserError("--keys deploys an imported release: name it", field="--image",
                        hint="e.g. --image HOST:PORT/packager/MODEL:TAG (what `packager import` printed)")
    tagged, pinned = parse_image(image)
    host, repo, tag = parse_release_ref(tagged)
    keys = load_keys(keys_dir, private=False)
    with tempfile.TemporaryDirectory(prefix="packager-deploy-verify-") as tmp:
        report = verify_ref(tagged, keys, Path(tmp))
        failures = report.failures()
        if report.ok and pinned and pinned != report.digests.get("image"):
            failures.append(f"image digest: --image pins {pinned}, the verified image is {report.digests.get('image')}")
        if failures or not report.ok:
            raise UserError("refusing to deploy: verification failed: " + "; ".join(failures or ["nothing verified"]),
                            field="verify", hint=HINT)
        st = report.statement
        chart = dest / "chart.tgz"
        shutil.copyfile(report.blob("chart/archive"), chart)
        plan = json.loads(report.blob("plan/plan.json").read_bytes())
    pins = {"image": {"repository": f"{host}/{repo}", "tag": tag, "digest": report.digests["image"]},
            "weights": {"oci": {"artifact": f"{host}/{repo}@{report.digests['weights']}"}}}
    log(f"deploy: verified {st.identity}:{st.version} ({len(report.checks)} checks): chart {st.digests['chart/archive'][:19]}..., "
        f"image {report.digests['image'][:19]}..., weights {report.digests['weights'][:19]}...")
    return Verified(chart, plan, pins)
