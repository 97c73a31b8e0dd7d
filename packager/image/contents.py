"""What goes into a build context besides the weights: the launcher's image.json and the Dockerfile's context
(labels, environment, the tokenizer a build pre-converts). `pipeline.py` assembles them."""
from __future__ import annotations

from packager import __version__ as PACKAGER_VERSION
from packager import adapter_files
from packager.families import Family
from packager.image.context import (CACHE_DIR, IMAGE_CONFIG_PATH, LABEL_PREFIX, PLAN_PATH, VENV, ImageContext,
                                    startup_budget_s)
from packager.planner.checkpoint import dir_in_image, local_source
from runtimes.layout import gguf_tokenizer_dir


def launcher_config(plan: dict, family: Family, mode: str, w, port: int) -> dict:
    """context/image.json: what the launcher needs beyond plan.json."""
    selected = plan.get("selected") or {}
    full = local_source(plan["model"], selected)
    source = {k: v for k, v in full.items() if k in ("kind", "repo", "revision", "file", "url")}
    files = w.relative_files() if w else dict(full.get("sha256") or {})
    adapters = adapter_files.launcher_entries(plan, w)
    return {
        "schema_version": 1,
        "packager_version": PACKAGER_VERSION,
        "family": family.name,
        "runtimes": list(family.runtimes),
        # `files` are relative to `dir`: the selected profile's checkpoint (a variant's own directory)
        "weights": {"mode": mode, "dir": dir_in_image(selected), "files": files,
                    "source": source},
        "cache_dir": CACHE_DIR,
        "port": port,
        **({"adapters": adapters} if adapters else {}),  # each checked, or downloaded beside the weights
    }


def image_context(plan: dict, family: Family, base: str, mode: str, w, wheel_name: str,
                  secret_ids: tuple[str, ...], port: int, python: str) -> ImageContext:
    model = plan["model"]
    names = [c["name"] for c in plan.get("candidates", [])]
    labels = {
        "org.opencontainers.image.title": f"{model['name']} ({family.name})",
        "org.opencontainers.image.description": f"{model.get('served_model_name', model['name'])} served with an "
                                                f"OpenAI-compatible API; profile {plan['selected']['name']}",
        "org.opencontainers.image.version": PACKAGER_VERSION,
        "org.opencontainers.image.vendor": "packager",
        "org.opencontainers.image.licenses": str(model.get("license") or "NOASSERTION"),
        "org.opencontainers.image.base.name": base,
        f"{LABEL_PREFIX}.profiles": ",".join(names),
        f"{LABEL_PREFIX}.selected": plan["selected"]["name"],
        f"{LABEL_PREFIX}.family": family.name,
        f"{LABEL_PREFIX}.weights": mode,
        f"{LABEL_PREFIX}.model": model.get("served_model_name", model["name"]),
    }
    env = [("PACKAGER_PLAN", PLAN_PATH), ("PACKAGER_IMAGE_CONFIG", IMAGE_CONFIG_PATH),
           ("HF_HOME", f"{CACHE_DIR}/hf"), ("HOME", CACHE_DIR), ("PYTHONUNBUFFERED", "1"),
           ("PYTHONDONTWRITEBYTECODE", "1")]
    if family.name != "vllm":  # the vLLM image's PATH must stay; the imported base has none at all
        env.append(("PATH", f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
    env.extend(family.env)
    gguf = _gguf_to_pretokenize(family, mode, w)
    return ImageContext(
        family=family.name, template=family.template, base_image=base, python=python, weights_mode=mode,
        weights=tuple(w.files) if (w and mode == "baked") else (), project_wheel=wheel_name,
        labels=tuple(sorted(labels.items())), env=tuple(env), groups=family.groups, secrets=secret_ids,
        healthcheck_start_period_s=startup_budget_s(w.size_bytes if w else 0), packager_version=PACKAGER_VERSION,
        port=port, gguf_tokenizer=gguf, gguf_tokenizer_dir=gguf_tokenizer_dir(gguf) if gguf else "",
    )


def _gguf_to_pretokenize(family: Family, mode: str, w) -> str:
    """The baked GGUF whose tokenizer the build converts: fallback families only (their venv has transformers)."""
    if mode != "baked" or w is None or family.name == "vllm" or not w.is_file or not w.root.name.endswith(".gguf"):
        return ""
    return w.root.name
