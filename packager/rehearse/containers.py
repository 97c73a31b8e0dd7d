"""Every container a chart renders, resolved the way the kubelet would see it: image, command,
args, environment (values, Secrets, ConfigMaps, the downward API, what LeaderWorkerSet injects)
and the files its volumes would hold."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from packager.errors import UserError
from runtimes.layout import LWS_GROUP_SIZE, LWS_LEADER_ADDRESS, LWS_WORKER_INDEX

# Pod templates by kind: (role, path to the pod spec). LeaderWorkerSet: leader and worker templates.
_TEMPLATES = {
    "Deployment": (("server", ("spec", "template", "spec")),),
    "StatefulSet": (("server", ("spec", "template", "spec")),),
    "Pod": (("test", ("spec",)),),
    "LeaderWorkerSet": (("leader", ("spec", "leaderWorkerTemplate", "leaderTemplate", "spec")),
                        ("worker", ("spec", "leaderWorkerTemplate", "workerTemplate", "spec"))),
}
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


@dataclass(frozen=True)
class Mount:
    path: str  # mountPath in the container
    kind: str  # configMap | secret | emptyDir | persistentVolumeClaim | other
    files: tuple[tuple[str, bytes], ...] = ()  # what a configMap/secret volume holds
    read_only: bool = False


@dataclass(frozen=True)
class Container:
    workload: str  # Kind/name
    role: str  # server | leader | worker | test
    name: str
    image: str
    command: tuple[str, ...] | None  # None: the image's ENTRYPOINT
    args: tuple[str, ...] | None  # None: the image's CMD
    env: tuple[tuple[str, str], ...]
    mounts: tuple[Mount, ...] = ()
    run_as_user: int | None = None
    read_only_root: bool = False
    notes: tuple[str, ...] = field(default=())
    secret_names: frozenset[str] = frozenset()  # env names whose values come from a Secret: never shown  # what was stood in for (an external Secret, the pod IP)

    @property
    def label(self) -> str:
        return f"{self.workload} [{self.role}] container {self.name}"


def _dig(doc: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        doc = (doc or {}).get(key)
    return doc


def _data(obj: dict) -> dict[str, bytes]:
    """A ConfigMap's or Secret's keys as bytes (Secret `data` is base64)."""
    out = {k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()}
    for k, v in (obj.get("data") or {}).items():
        out[k] = base64.b64decode(v) if obj.get("kind") == "Secret" else str(v).encode()
    for k, v in (obj.get("binaryData") or {}).items():
        out[k] = base64.b64decode(v)
    return out


class Objects:
    """The rendered objects, for looking up the ConfigMaps and Secrets pods refer to."""

    def __init__(self, docs: list[dict]):
        self.docs = docs
        self.by_kind: dict[tuple[str, str], dict] = {(d["kind"], d["metadata"]["name"]): d for d in docs}

    def data(self, kind: str, name: str) -> dict[str, bytes] | None:
        obj = self.by_kind.get((kind, name))
        return _data(obj) if obj is not None else None


def parse_rendered(text: str, source: str) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind")]
    except yaml.YAMLError as exc:
        raise UserError(f"the rendered chart is not YAML: {exc}", file=source) from None
    return docs


def _env(spec: dict, objects: Objects, ctx: dict[str, str], notes: list[str],
         secret: set[str]) -> list[tuple[str, str]]:
    """The container's environment; `secret` collects the names whose values come from Secrets."""
    out: dict[str, str] = dict(ctx)  # what the platform injects comes first; the container's own wins
    for src in spec.get("envFrom") or []:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in src:
                data = objects.data(kind, src[key]["name"])
                if data is None:
                    notes.append(f"{kind} {src[key]['name']} is not in the chart: its keys are not replayed")
                    continue
                names = {src.get("prefix", "") + k: v.decode(errors="replace") for k, v in data.items()}
                out.update(names)
                if kind == "Secret":
                    secret.update(names)
    for item in spec.get("env") or []:
        name, value = item["name"], item.get("value")
        ref = item.get("valueFrom") or {}
        if value is None and ref:
            value = _value_from(name, ref, objects, ctx, notes)
            if "secretKeyRef" in ref:
                secret.add(name)
        out[name] = _expand(str(value or ""), out)
    return list(out.items())


def _value_from(name: str, ref: dict, objects: Objects, ctx: dict[str, str], notes: list[str]) -> str:
    for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
        if key in ref:
            data = objects.data(kind, ref[key]["name"])
            if data is not None and ref[key]["key"] in data:
                return data[ref[key]["key"]].decode(errors="replace")
            notes.append(f"{name}: {kind} {ref[key]['name']} is managed outside the chart; a stand-in value is used")
            return "rehearsal-stand-in"
    if "fieldRef" in ref:
        path = ref["fieldRef"].get("fieldPath", "")
        return {"status.podIP": "127.0.0.1", "metadata.namespace": ctx.get("POD_NAMESPACE", "default")}.get(
            path, ctx.get("POD_NAME", "pod"))
    return ""


def _expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion in values, command and args (unknown names stay as written)."""
    return _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def _mounts(container: dict, pod: dict, objects: Objects, notes: list[str]) -> list[Mount]:
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    out = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"], {})
        kind = next((k for k in ("configMap", "secret", "emptyDir", "persistentVolumeClaim") if k in vol), "other")
        files: tuple[tuple[str, bytes], ...] = ()
        if kind in ("configMap", "secret"):
            obj_kind = "ConfigMap" if kind == "configMap" else "Secret"
            name = vol[kind].get("name") or vol[kind].get("secretName")
            data = objects.data(obj_kind, name)
            if data is None:
                notes.append(f"volume {vm['name']}: {obj_kind} {name} is managed outside the chart; mounted empty")
                data = {}
            items = vol[kind].get("items")
            pairs = [(i["path"], data.get(i["key"], b"")) for i in items] if items else list(data.items())
            files = tuple(pairs)
        out.append(Mount(vm["mountPath"], kind, files, bool(vm.get("readOnly"))))
    return out


def _lws_env(doc: dict, role: str, namespace: str) -> dict[str, str]:
    """What the LeaderWorkerSet controller sets in every pod of group 0."""
    name = doc["metadata"]["name"]
    size = _dig(doc, ("spec", "leaderWorkerTemplate", "size")) or 1
    return {LWS_LEADER_ADDRESS: f"{name}-0.{name}.{namespace}", LWS_GROUP_SIZE: str(size),
            LWS_WORKER_INDEX: "0" if role == "leader" else "1", "LWS_NAME": name, "LWS_GROUP_INDEX": "0"}


def containers(docs: list[dict], namespace: str) -> list[Container]:
    objects = Objects(docs)
    out = []
    for doc in docs:
        for role, path in _TEMPLATES.get(doc["kind"], ()):
            pod = _dig(doc, path) or {}
            ctx = {"POD_NAME": f"{doc['metadata']['name']}-0", "POD_NAMESPACE": namespace}
            if doc["kind"] == "LeaderWorkerSet":
                ctx.update(_lws_env(doc, role, namespace))
            pod_sc = pod.get("securityContext") or {}
            for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                notes: list[str] = []
                secret: set[str] = set()
                env = _env(c, objects, ctx, notes, secret)
                env_map = dict(env)
                sc = c.get("securityContext") or {}
                out.append(Container(
                    workload=f"{doc['kind']}/{doc['metadata']['name']}", role=role, name=c["name"],
                    image=str(c.get("image") or ""),
                    command=tuple(_expand(str(a), env_map) for a in c["command"]) if "command" in c else None,
                    args=tuple(_expand(str(a), env_map) for a in c["args"]) if "args" in c else None,
                    env=tuple(env), mounts=tuple(_mounts(c, pod, objects, notes)),
                    run_as_user=sc.get("runAsUser", pod_sc.get("runAsUser")),
                    read_only_root=bool(sc.get("readOnlyRootFilesystem")), notes=tuple(notes),
                    secret_names=frozenset(secret)))
    return out


def write_mount_files(mount: Mount, root: Path) -> None:
    base = root.resolve()
    for rel, data in mount.files:
        target = (root / rel).resolve()
        if not target.is_relative_to(base):  # items[].path comes from the chart: keep it inside the stage
            raise UserError(f"volume item path {rel!r} leaves the volume", field="volumes[].items[].path",
                            hint="use a relative path without '..'")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
