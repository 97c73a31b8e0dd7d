"""The rehearsal as a person reads it (one block per container), or as JSON."""
from __future__ import annotations

from packager.rehearse import Outcome, Result
from packager.rehearse.replay import describe

MARK = {True: "ok  ", False: "FAIL", None: "n/a "}


def _block(r: Result) -> list[str]:
    c, rec = r.container, r.replay.record
    lines = [f"{c.label}: {'would start' if r.ok else 'would NOT start'} (replayed {r.image_where})",
             f"  image        {c.image}"]
    if rec.get("profile"):
        lines.append(f"  profile      {rec['profile']}" + (f" ({rec['runtime']})" if rec.get("runtime") else ""))
    if rec.get("hardware"):
        lines.append(f"  hardware     {rec['hardware']}")
    for step in rec.get("prelude") or []:
        lines.append(f"  before       {step if isinstance(step, str) else describe(step)}")
    if rec.get("argv"):
        lines.append(f"  argv         {describe(rec['argv'])}")
    lines.append(f"  import path  {':'.join(rec.get('pythonpath') or []) or '(PYTHONPATH unset)'}")
    if rec.get("model_path"):
        lines.append(f"  model path   {rec['model_path']}")
    lines += [f"  {MARK[x.ok]} {x.name}: {x.detail}" for x in r.checks]
    lines += [f"  note: {n}" for n in (*c.notes, *r.replay.notes)]
    return lines


def text(outcome: Outcome) -> str:
    lines = [f"rehearsal on {outcome.hardware}", ""]
    for r in outcome.results:
        lines += _block(r) + [""]
    bad = [r for r in outcome.results if not r.ok]
    if bad:
        lines.append(f"{len(bad)} of {len(outcome.results)} containers would not start:")
        lines += [f"  - {r.container.label}: " + "; ".join(f"{x.name} ({x.detail})" for x in r.failed) for r in bad]
    else:
        lines.append(f"all {len(outcome.results)} containers would start")
    return "\n".join(lines)


def as_dict(outcome: Outcome) -> dict:
    return {"hardware": outcome.hardware, "ok": outcome.ok, "containers": [
        {"workload": r.container.workload, "role": r.container.role, "container": r.container.name,
         "image": r.container.image, "replayed": r.replay.how, "ok": r.ok, "record": r.replay.record,
         "checks": [{"name": x.name, "ok": x.ok, "detail": x.detail} for x in r.checks],
         "notes": [*r.container.notes, *r.replay.notes]} for r in outcome.results]}
