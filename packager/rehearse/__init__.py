"""`packager rehearse CHART_DIR`: would every pod this chart renders start?

Render the chart (its values, plus --set/-f), take every container of the Deployment, the
LeaderWorkerSet's leader and worker and the test pod, replay its start with the launcher in dry-run
mode (in the chart's image when the local engine has it), and check what the kubelet would run:
the profile, the final argv (vLLM's parser), the engine's import path (--middleware), the weights,
the image. NIM's `nim-serve --dry-run` rehearses one container; this rehearses the chart.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from packager.errors import UserError
from packager.rehearse import checks as chk
from packager.rehearse import platforms
from packager.rehearse.containers import Container, containers, parse_rendered
from packager.rehearse.replay import Engine, Replay, in_image, installed, process_argv, read_record, starts_launcher


@dataclass(frozen=True)
class Rehearsal:
    chart_dir: Path
    hardware: str | None = None  # None: the hardware the chart was planned for
    profile: str | None = None
    registry: str | None = None
    sets: tuple[str, ...] = ()
    values_files: tuple[str, ...] = ()
    namespace: str = "default"
    release: str = "rehearsal"


@dataclass(frozen=True)
class Result:
    container: Container
    replay: Replay
    checks: tuple[chk.Check, ...]
    image_where: str

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    @property
    def failed(self) -> list[chk.Check]:
        return [c for c in self.checks if c.ok is False]


@dataclass(frozen=True)
class Outcome:
    hardware: str
    results: tuple[Result, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)


def hardware_shorthand(plan: dict) -> str | None:
    """KEY[:COUNT[xNODES]] of the hardware a plan was made for (its first pool)."""
    pools = (plan.get("hardware") or {}).get("pools") or []
    if not pools:
        return None
    pool = pools[0]
    key = (pool.get("accelerator") or {}).get("key") or "cpu"
    if key == "cpu":
        return "cpu"
    nodes = int(pool.get("nodes") or 1)
    return f"{key}:{pool.get('count_per_node') or 1}" + (f"x{nodes}" if nodes > 1 else "")


def _objects_file(req: Rehearsal) -> tuple[dict, list[dict]]:
    """Objects already rendered (`packager kserve --out FILE`); the plan is the one their pods mount."""
    path = Path(req.chart_dir)
    docs = parse_rendered(path.read_text(), str(path))
    plan = {}
    for d in docs:
        if d["kind"] == "ConfigMap" and "plan.json" in (d.get("data") or {}):
            try:
                plan = json.loads(d["data"]["plan.json"])
            except ValueError:
                raise UserError("plan.json is not JSON", file=str(path), field=f"ConfigMap {d['metadata']['name']}") from None
    return {"plan": plan}, docs


def render(req: Rehearsal) -> tuple[dict, list[dict]]:
    """The chart's merged values and every object it renders (helm template, tests included); or the objects
    of a YAML file (packager kserve's)."""
    from packager.chart.overrides import apply

    chart = Path(req.chart_dir)
    if chart.is_file():
        return _objects_file(req)
    values_path = chart / "values.yaml"
    if not (chart / "Chart.yaml").is_file() or not values_path.is_file():
        raise UserError(f"{chart} is not a chart directory (no Chart.yaml and values.yaml)", file=str(chart),
                        field="CHART_DIR", hint="pass a chart written by `packager chart` or `packager build`")
    try:
        values = yaml.safe_load(values_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"values.yaml is not YAML: {exc}", file=str(values_path)) from None
    values = apply(values, sets=req.sets, values_files=req.values_files)
    import helm_python as helm

    with helm.Chart.load(str(chart)) as loaded:
        try:
            rendered = loaded.render(values, name=req.release, namespace=req.namespace, is_install=True)
        except helm.HelmError as exc:
            raise UserError(f"the chart does not render: {exc}", file=str(chart)) from None
    text = "\n---\n".join(body for path, body in sorted(rendered.items()) if not path.endswith("NOTES.txt"))
    return values, parse_rendered(text, str(chart))


def rehearse_one(c: Container, engine: Engine, req: Rehearsal, hardware: str | None, docs: list[dict]) -> Result:
    if platforms.is_endpoint_picker(c):
        return Result(c, Replay("read", platforms.read_record(c)), tuple(platforms.endpoint_picker(c, docs)),
                      "read, not run")
    config = engine.inspect(c.image)
    image_cfg = (config or {}).get("Config")
    if starts_launcher(c, (image_cfg or {}).get("Entrypoint") if image_cfg else None):
        replay = in_image(c, engine, image_cfg, hardware, req.profile) if config else installed(c, hardware,
                                                                                                 req.profile)
    else:
        replay = Replay("read", read_record(c, image_cfg))
    rec = replay.record
    found = [chk.image(c.image, engine, req.registry, config is not None)]
    if replay.how == "read" and c.role == "test":
        found.append(chk.executable(process_argv(c, image_cfg), engine, c.image) if config else None)
    found += [chk.starts(rec, replay), chk.vllm_argv(rec.get("argv") or []), chk.middleware(rec, replay),
              chk.weights(rec, replay), platforms.planned_argv(c, rec)]
    uri = platforms.storage_uris(docs).get(c.workload.split("/", 1)[1])
    if uri:
        found = platforms.provisioned(uri, rec, found)
    checks = tuple(x for x in found if x is not None)
    checks += tuple(chk.launcher_checks(rec, {x.name for x in checks}))
    where = "in its image" if replay.how == "image" else (
        "with the installed packager" if replay.how == "installed" else "read, not run")
    return Result(c, replay, checks, where)


def rehearse(req: Rehearsal) -> Outcome:
    values, docs = render(req)
    from packager.chart import chart_plan

    plan = chart_plan(Path(req.chart_dir), values)
    if req.profile:
        from packager.planfile import pin_profile

        pin_profile(plan, req.profile)  # exit 2 naming the compatible profiles
    hardware = req.hardware or hardware_shorthand(plan)
    if req.hardware:
        from packager.manifests import load_hardware

        load_hardware(req.hardware)  # a bad shorthand is exit 2 here, not a launcher failure per pod
    kinds = {d["metadata"]["name"]: d["kind"] for d in docs}
    docs = platforms.workloads(docs)
    found = [_as_platform(c, kinds) for c in containers(docs, req.namespace)]
    if not found:
        raise UserError("the chart renders no container", file=str(req.chart_dir),
                        hint="check the chart's values (engine.argv, image)")
    engine = Engine.find()
    return Outcome(hardware or "this machine", tuple(rehearse_one(c, engine, req, hardware, docs) for c in found))


def _as_platform(c: Container, kinds: dict[str, str]) -> Container:
    """A KServe object's pod is labelled by the object (InferenceService/NAME), not by what stands in for it;
    the endpoint picker by its role."""
    name = c.workload.split("/", 1)[1]
    kind = kinds.get(name)
    if kind in ("InferenceService", "LLMInferenceService"):
        return dataclasses.replace(c, workload=f"{kind}/{name}")
    if platforms.is_endpoint_picker(c):
        return dataclasses.replace(c, role="endpoint-picker")
    return c

