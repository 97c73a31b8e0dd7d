"""Chart values that follow from a plan (plan.json of docs/contracts.md)."""
from __future__ import annotations

import re
from typing import Any

from packager.chart import placement, sizing
from packager.errors import UserError
from packager.planfile import portable_plan
from runtimes import oci_ref

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def parse_image(ref: str) -> dict[str, str]:
    """`repo[:tag][@sha256:...]` -> {repository, tag, digest}; a port in the host is not a tag."""
    ref = ref.strip()
    parsed = oci_ref.parse(ref)
    repo, tag, digest = parsed.name, parsed.tag, parsed.digest
    if digest and not _DIGEST.match(digest):
        raise UserError(f"image digest {digest!r} is not sha256:<64 hex>", field="image",
                        hint="give repo:tag or repo@sha256:<digest>")
    if not repo or not re.match(r"^[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?$", repo):
        raise UserError(f"image {ref!r} is not a valid image reference", field="image",
                        hint="lowercase repository, e.g. registry.example.com/team/model:1.0")
    return {"repository": repo, "tag": tag, "digest": digest}


def default_image(plan: dict[str, Any]) -> dict[str, str]:
    """The image `packager build` records in the plan, else the name it would tag."""
    recorded = plan.get("image")
    if isinstance(recorded, str):
        return parse_image(recorded)
    if isinstance(recorded, dict) and recorded.get("repository"):
        return {"repository": recorded["repository"], "tag": str(recorded.get("tag") or ""),
                "digest": recorded.get("digest") or ""}
    from packager.families import image_ref  # the name `packager build` tags: one rule for both

    return parse_image(image_ref(plan))


def selected_profile(plan: dict[str, Any]) -> dict[str, Any]:
    profile = plan.get("selected")
    if not profile:
        advice = "; ".join(plan.get("advice") or []) or "see `packager profiles` for the rejected profiles"
        raise UserError("the plan selected no profile, so there is nothing to deploy",
                        field="selected", hint=advice)
    return profile


def profile_pool(plan: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
    pools = (plan.get("hardware") or {}).get("pools") or []
    for pool in pools:
        if pool.get("name") == profile.get("pool"):
            return pool
    if len(pools) == 1:
        return pools[0]
    raise UserError(f"profile {profile.get('name')!r} names pool {profile.get('pool')!r}, "
                    f"which the plan's hardware does not have", field="selected.pool")


def values_from_plan(plan: dict[str, Any], image: str | None = None) -> dict[str, Any]:
    """The plan-derived part of values.yaml; the chart's defaults fill the rest."""
    profile = selected_profile(plan)
    pool = profile_pool(plan, profile)
    model = plan["model"]
    vendor = profile.get("vendor", "cpu")
    weights = sizing.weights_bytes(model, profile)
    key = placement.resource_key(vendor, pool)
    nodes = int(profile.get("nodes", 1))
    values: dict[str, Any] = {
        "image": parse_image(image) if image else default_image(plan),
        "model": {
            "name": model["name"],
            "servedModelName": model.get("served_model_name") or model["name"],
            "weightsGiB": round(weights / sizing.GIB, 2),
        },
        "profile": {
            "name": profile["name"],
            "runtime": profile["runtime"],
            "vendor": vendor,
            "tensorParallelSize": int(profile.get("tensor_parallel_size", 1)),
            "pipelineParallelSize": int(profile.get("pipeline_parallel_size", 1)),
            "nodes": nodes,
            "devicesPerNode": sizing.devices_per_pod(profile),
        },
        "accelerator": {
            "resourceKey": key or "",
            "count": sizing.devices_per_pod(profile) if key else 0,
        },
        "resources": sizing.resources(pool, profile, weights),
        "shm": {"sizeLimit": f"{sizing.shm_gib(profile)}Gi"},
        "probes": {"startup": sizing.startup_probe(sizing.startup_budget_s(weights))},
        "nodeSelector": placement.node_selector(vendor, pool),
        "tolerations": placement.tolerations(vendor, pool),
        "plan": portable_plan(plan),  # the ConfigMap leaves this machine: no host paths in it
    }
    values.update(replica_values(profile, pool))
    if not values["image"]["tag"]:
        values["image"]["tag"] = str(plan.get("packager_version", "0.1.0"))
    fill = profile.get("fill") or {}
    if nodes > 1 or int(fill.get("replicas") or 1) > max(1, int(fill.get("replicas_per_node") or 1)):
        # Every pod of a group, or replicas spread over the pool's nodes, mount the weights volume on
        # different nodes.
        values["weights"] = {"volume": {"accessModes": ["ReadWriteMany"]}}
    return values


def replica_values(profile: dict[str, Any], pool: dict[str, Any]) -> dict[str, Any]:
    """replicaCount from the planner's fill (planner/fill.py); autoscaling goes from one replica up to as
    many as the pool's nodes hold (a latency plan's idle devices included). A plan without a fill (an older
    plan.json) keeps one replica."""
    fill = profile.get("fill") or {}
    replicas = max(1, int(fill.get("replicas") or 1))
    nodes = max(1, int(pool.get("nodes") or 1))
    span = max(1, int(profile.get("nodes") or 1))
    if span > 1 or profile.get("vendor", "cpu") == "cpu":
        hold = nodes // span
    else:
        per_node = int(pool.get("count_per_node") or 1)
        hold = per_node // max(1, sizing.devices_per_pod(profile)) * nodes
    bounds = {"minReplicas": 1, "maxReplicas": max(replicas, hold)}
    return {"replicaCount": replicas, "autoscaling": {"hpa": dict(bounds), "keda": dict(bounds)}}
