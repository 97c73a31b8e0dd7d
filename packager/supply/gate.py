"""The deploy gate: `packager deploy` refuses artifacts that do not verify.

A release whose weights travel as an OCI artifact (weights.mode=oci), or any deploy given
`--keys`, is verified first (`packager verify REF`: image signature, weights digests and
model-signing, chart provenance, SBOM); a failed check stops the deploy and is named.
`--allow-unverified` deploys anyway, saying what was skipped.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from packager.errors import UserError


def chart_release(chart_dir: Path) -> dict:
    """What the rendered chart will run: image reference, weights mode and artifact."""
    values = yaml.safe_load((Path(chart_dir) / "values.yaml").read_text(encoding="utf-8")) or {}
    image, weights = values.get("image") or {}, values.get("weights") or {}
    return {"repository": image.get("repository", ""), "tag": str(image.get("tag") or ""),
            "digest": image.get("digest") or "", "mode": weights.get("mode", "baked"),
            "artifact": (weights.get("oci") or {}).get("artifact", "")}


def check(chart_dir: Path, keys: Path | None, allow_unverified: bool, log=print) -> None:
    rel = chart_release(chart_dir)
    if rel["mode"] != "oci" and keys is None:
        return  # nothing signed to check, and no keys asked for it
    if allow_unverified:
        log("deploy: --allow-unverified: image and weights are deployed WITHOUT signature checks")
        return
    if keys is None:
        raise UserError("refusing to deploy weights from an OCI artifact without verifying them", field="--keys",
                        hint="pass --keys DIR (the public keys from `packager keys init`), or --allow-unverified")
    if not rel["tag"] or "/" not in rel["repository"]:
        raise UserError(f"image {rel['repository']!r} tag {rel['tag']!r}: verification needs the imported image "
                        "by registry and tag", field="--image", hint="e.g. --image HOST:PORT/packager/MODEL:TAG")
    from packager.supply.keys import load_keys
    from packager.supply.verify import verify_ref

    report = verify_ref(f"{rel['repository']}:{rel['tag']}", load_keys(keys, private=False))
    failures = report.failures()
    if report.ok and rel["digest"] and rel["digest"] != report.digests.get("image"):
        failures.append(f"image digest: the chart pins {rel['digest']}, the verified image is {report.digests.get('image')}")
    verified = report.digests.get("weights", "")
    if rel["mode"] == "oci" and verified and not rel["artifact"].endswith("@" + verified):
        failures.append(f"weights artifact: the chart mounts {rel['artifact'] or '(none)'}, the verified weights "
                        f"are {verified}")
    if failures or not verified:
        raise UserError("refusing to deploy: verification failed: " + "; ".join(failures or ["no weights verified"]),
                        field="verify", hint="re-import the bundle (`packager import`), check the keys, "
                        "or pass --allow-unverified to deploy anyway")
    log(f"deploy: verified {len(report.checks)} checks (image signature, weights, chart, sbom)")
