"""Which checkpoint a profile serves, and where it sits in the image: a quantized variant's own
checkpoint (at its pinned revision) in its own directory, else the model's source in the model dir.

One rule for the planner's argv, the image build, the weights artifact and the launcher. Plain
dicts and the planner's own types only, no I/O: the launcher imports it inside the image.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from runtimes.layout import MODEL_DIR, variant_dir

if TYPE_CHECKING:
    from packager.facts import ModelFacts
    from packager.planner.types import Candidate


def candidate_source(model: ModelFacts, c: Candidate) -> dict:
    """A candidate's checkpoint, while planning."""
    return dict(c.variant.source) if c.variant is not None else dict(model.source)


def profile_source(model: dict, profile: dict | None) -> dict:
    """A plan.json PROFILE's checkpoint, as the plan carries it (no path on this machine)."""
    if (profile or {}).get("quantized_variant"):
        return dict(profile.get("weights_source") or {})
    return dict(model.get("source") or {})


def local_source(model: dict, profile: dict | None) -> dict:
    """A PROFILE's checkpoint with its path on this machine where the planner found one: the model's
    own variant entry keeps a local path the profile (which travels) leaves out."""
    name = (profile or {}).get("quantized_variant")
    if name:
        variants = model.get("serving", {}).get("quantized_variants", [])
        entry = next((v["source"] for v in variants if v.get("name") == name), None)
        return dict(entry) if entry else profile_source(model, profile)
    source = dict(model["source"])
    source.setdefault("path", model.get("local_path"))
    return source


def dir_in_image(profile: dict | None) -> str:
    """The in-image directory of a PROFILE's checkpoint."""
    variant = (profile or {}).get("quantized_variant")
    return variant_dir(variant) if variant else MODEL_DIR


def prefix_in_model_dir(profile: dict | None) -> str:
    """Where a PROFILE's files go under the model dir: "" or "variants/NAME/"."""
    where = dir_in_image(profile)
    return where[len(MODEL_DIR) + 1:] + "/" if where != MODEL_DIR else ""
