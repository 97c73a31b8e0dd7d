"""The planner: candidates -> constraints -> estimates -> ranking -> fill the node -> explanation. Imports no torch."""
from __future__ import annotations

from packager.errors import UserError
from packager.facts import Hardware, ModelFacts, model_facts_from_dict
from packager.planner.advice import advise
from packager.planner.candidates import enumerate_candidates
from packager.planner.evaluate import evaluate
from packager.planner.fill import explain_fill, fill
from packager.planner.ranking import OBJECTIVES, explain, rank
from packager.planner.types import Plan, PlanRequest, Profile, Rejection

__all__ = ["Plan", "PlanRequest", "Profile", "Rejection", "make_plan", "plan_files", "read_plan_file", "replan"]


def check_request(req: PlanRequest) -> None:
    """Overrides from the command line or the environment get the same checks as manifests."""
    if req.objective not in OBJECTIVES:
        raise UserError(f"objective {req.objective!r} is not allowed", field="objective",
                        hint="use " + ", ".join(OBJECTIVES))
    if req.max_model_len is not None and not 0 < req.max_model_len <= req.model.max_positions:
        raise UserError(f"max model length {req.max_model_len} is outside 1..{req.model.max_positions} "
                        f"(the model's positions)", field="max_model_len",
                        hint=f"use at most {req.model.max_positions}")


def make_plan(req: PlanRequest) -> Plan:
    check_request(req)
    profiles: list[Profile] = []
    rejected: list[Rejection] = []
    for c in enumerate_candidates(req.model, req.hardware):
        if req.only_profiles is not None and c.name not in req.only_profiles:
            continue
        result = evaluate(req, c)
        (profiles if isinstance(result, Profile) else rejected).append(result)
    ranked = fill(rank(profiles, req.objective, req.model.precisions), req.objective)
    advice = advise(req, rejected) if not ranked else []
    why, extra = explain(ranked, req.objective, req.model.precisions), explain_fill(ranked) if ranked else ""
    why = f"{why[:-1]}; {extra}." if extra else why  # still one sentence
    return Plan(request=req, candidates=tuple(ranked), rejected=tuple(rejected), advice=tuple(advice), why=why)


def read_plan_file(path) -> dict:
    """A plan.json written earlier (`profiles --json`, `build`): bad files are a UserError with the line."""
    import json
    from pathlib import Path

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read the plan: {exc.strerror}", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None


def plan_files(model_path: str, hardware: str | None = None, objective: str | None = None,
               model_ref: str | None = None, max_model_len: int | None = None, adapters: tuple[str, ...] = ()) -> Plan:
    """Plan from a model manifest file and a hardware file/shorthand (None: this machine);
    ``adapters``: ``--adapter NAME=SOURCE`` values."""
    from packager.manifests import load_hardware, load_model  # pydantic only when manifests are read

    model = load_model(model_path, adapters)
    if hardware is None:
        from packager.manifests.machine import this_machine
        hw: Hardware = this_machine()
    else:
        hw = load_hardware(hardware)
    return make_plan(PlanRequest(model=model, hardware=hw, objective=objective or model.objective,
                                 model_ref=model_ref, max_model_len=max_model_len))


def model_path_in_image(source: dict) -> str:
    """The engine's model path inside an image, from the manifest's source alone (no weights needed):
    the GGUF file under the model dir, or the model dir itself. `packager build` finds the same."""
    from pathlib import PurePosixPath

    from runtimes.layout import MODEL_DIR

    name = source.get("file") or (PurePosixPath(source["path"]).name if str(source.get("path", "")).endswith(".gguf")
                                  else "")
    if name.endswith(".zip"):  # a zipped model is unpacked into the model dir (local_weights.locate)
        name = ""
    return f"{MODEL_DIR}/{name}" if name else MODEL_DIR


def plan_for_image(model_path: str, hardware: str | None = None, objective: str | None = None,
                   adapters: tuple[str, ...] = ()) -> Plan:
    """The plan as an image runs it: engine argv with in-image weight (and adapter) paths, never this machine's."""
    from dataclasses import replace

    first = plan_files(model_path, hardware, objective, adapters=adapters)
    return make_plan(replace(first.request, model_ref=model_path_in_image(first.request.model.source)))


def replan(plan: dict, hardware: Hardware, pinned: str | None = None, *, model_ref: str | None = None,
           max_model_len: int | None = None) -> Plan:
    """Re-plan a recorded plan (an image's plan.json) for the hardware found at start, within its profiles."""
    names = tuple(p["name"] for p in plan.get("candidates", []))
    if pinned is not None and pinned not in names:
        raise UserError(f"profile {pinned!r} is not in this image", field="PACKAGER_PROFILE",
                        hint="use one of: " + ", ".join(names))
    model = model_facts_from_dict(plan["model"])
    req = PlanRequest(model=model, hardware=hardware, objective=plan.get("objective", model.objective),
                      model_ref=model_ref or plan.get("model_ref"), max_model_len=max_model_len, only_profiles=names)
    result = make_plan(req)
    if pinned is None:
        return result
    chosen = result.profile(pinned)
    if chosen is None:
        why = next((r.reasons for r in result.rejected if r.name == pinned), ("not offered on this hardware",))
        raise UserError(f"pinned profile {pinned!r} cannot run here: {'; '.join(why)}", field="PACKAGER_PROFILE",
                        hint="unset PACKAGER_PROFILE to let the launcher choose, or pick a compatible profile")
    rest = tuple(p for p in result.candidates if p.name != pinned)
    return Plan(request=req, candidates=(chosen, *rest), rejected=result.rejected, advice=result.advice,
                why=f"{pinned} was pinned by PACKAGER_PROFILE")
