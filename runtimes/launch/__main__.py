"""The image's entrypoint: pick the hardware, re-plan within the image's profiles, make sure the
chosen profile's weights are there, then exec the engine (or, for a dry run, print the launch
record and exit).

`python -m runtimes.launcher` (exec-form ENTRYPOINT). It execs, so the server becomes PID 1 and
receives the container's signals directly. Every pod starts here: a single server, and the
leader and workers of a LeaderWorkerSet group (runtimes.launch.lws).

Environment: PACKAGER_PLAN (the chart mounts the plan ConfigMap and points here; the image's
own plan.json is the fallback), PACKAGER_PROFILE (pin a profile by name), PACKAGER_HOST
(default 0.0.0.0), PACKAGER_PORT, PACKAGER_MAX_MODEL_LEN, PACKAGER_SERVED_MODEL_NAME,
PACKAGER_DEVICE, PACKAGER_ROLE (else from LWS_*), PACKAGER_HARDWARE (stands in for detection),
PACKAGER_DRY_RUN=1; volume weights: PACKAGER_MODEL_DIR, PACKAGER_WEIGHTS_URL,
PACKAGER_WEIGHTS_TOKEN (or HF_TOKEN, or a file at HF_TOKEN_PATH), PACKAGER_VERIFY_WEIGHTS=0|always;
PACKAGER_API_KEY (or VLLM_API_KEY): the engine's API key, handed on as VLLM_API_KEY. The download
tokens (engine_env.DOWNLOAD_SECRETS) end with the weights step: neither ray nor the engine gets them.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping

from runtimes.launch import launch_record as record, lws, target as hardware, weights
from runtimes.launch.decide import decide, in_image_ref, model_path, no_fit_screen
from runtimes.launch.engine_env import (DOWNLOAD_SECRETS, engine_environment, engine_python, middleware,
                                       middleware_importable)
from runtimes.launch.settings import EXIT_BAD_INPUT, EXIT_NO_FIT, EXIT_OK, LaunchError, Settings
from runtimes import ready
from runtimes.layout import (CACHE_DIR, ENV_DRY_RUN, ENV_IMAGE_CONFIG, ENV_PLAN, ENV_READY, IMAGE_CONFIG_PATH, MODEL_DIR,
                             PLAN_PATH)

STARTED = time.time()  # the container's start, as near as the launcher sees it: the ready screen counts from here


def _load(path: str, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LaunchError(f"cannot read the image's {what} at {path}: {exc}") from None


def load_plan(env: Mapping[str, str], say) -> tuple[dict, str]:
    """The mounted plan (the chart's ConfigMap, so chart values can change it without a rebuild),
    else the image's own."""
    path = env.get(ENV_PLAN) or PLAN_PATH
    if path != PLAN_PATH and not Path(path).exists() and Path(PLAN_PATH).is_file():
        say(f"plan: nothing at {path}; using the image's {PLAN_PATH}")
        path = PLAN_PATH
    return _load(path, "plan"), path


def image_model_ref(plan_source: str, config: dict) -> str:
    """The model path the image was built with: the fallback when a mounted plan's is not one.
    The image's own plan says; else its launcher config (one GGUF file, or the model dir)."""
    if plan_source != PLAN_PATH and Path(PLAN_PATH).is_file():
        try:
            return in_image_ref(json.loads(Path(PLAN_PATH).read_text()))
        except (OSError, ValueError):
            pass
    w = config.get("weights") or {}
    files = list(w.get("files") or ())
    base = w.get("dir") or MODEL_DIR
    if len(files) == 1 and files[0].endswith(".gguf"):
        return f"{base}/{files[0]}"
    return MODEL_DIR


def main(env: Mapping[str, str] | None = None, execvp=os.execvp) -> int:
    env = os.environ if env is None else env
    dry = env.get(ENV_DRY_RUN, "").strip().lower() in ("1", "true", "yes")
    if dry:  # stdout carries the record only; nothing is written outside a temp dir
        with tempfile.TemporaryDirectory(prefix="packager-dry-run-") as tmp:
            rec = record.new_record()
            code = launch(env, execvp, rec, dry_tmp=tmp)
            print(json.dumps(record.finish(rec, code), indent=1), flush=True)
            return code
    return launch(env, execvp, None)


def launch(env: Mapping[str, str], execvp, rec: dict | None, dry_tmp: str | None = None) -> int:
    dry = rec is not None
    out = sys.stderr if dry else sys.stdout

    def say(msg: str) -> None:
        print(msg, file=out, flush=True)

    def fail(msg: str, code: int) -> int:
        print(f"packager launcher: {msg}", file=sys.stderr, flush=True)
        if dry:
            rec["problems"].append(msg)
        return code

    try:
        plan, plan_source = load_plan(env, say)
        config_path = env.get(ENV_IMAGE_CONFIG) or IMAGE_CONFIG_PATH
        if dry and not Path(config_path).exists():
            config, in_image = {}, False  # a rehearsal outside the image: every runtime, baked weights
        else:
            config, in_image = _load(config_path, "launcher config"), True
        settings = Settings.from_env(env, default_port=int(config.get("port", 8000)))
        if dry:
            rec.update(role=settings.role, plan_source=plan_source, in_image=in_image, device=settings.device)
        hw, hw_source = hardware.choose(settings)
        hw_dict = hw.to_dict() if hasattr(hw, "to_dict") else dict(hw)
        say(f"packager launcher: {'detected' if hw_source == 'detected' else 'planning for'} {hardware.describe(hw_dict)}")
        if dry:
            rec.update(hardware=hardware.describe(hw_dict), hardware_source=hw_source)
        from packager.planner import replan

        base = weights.base_dir(config, env)
        ref = in_image_ref(plan, image_model_ref(plan_source, config))
        decision = decide(plan, config, hw, settings, replan, model_dir=base, model_ref=ref)
        say(decision.table)
        if decision.argv is None:
            print(no_fit_screen(hw_dict, decision.plan), file=sys.stderr, flush=True)
            if dry:
                rec["problems"].append("no profile of this image fits " + hardware.describe(hw_dict))
            return EXIT_NO_FIT
        profile = decision.plan["selected"]
        if dry:
            rec.update(profile=profile["name"], runtime=profile.get("runtime"), model_path=model_path(decision.argv))
        spec = weights.spec_for(profile, plan, config, env)
        target = weights.target_dir(spec, base)
        if dry:
            found = weights.inspect(spec, target, env)
            rec["weights"] = found
            if not found["present"] and (spec.mode != "baked" and not found["would_download_from"]):
                rec["problems"].append(f"weights: {target} lacks {found['missing'] or 'the weights'} and there is "
                                       "no source to download them from (PACKAGER_WEIGHTS_URL or a Hub repo)")
            if not found["present"] and spec.mode == "baked" and in_image:
                rec["problems"].append(f"weights: the image lacks {found['missing'] or 'its weights'} under {target}")
            for aspec, aenv in weights.adapter_specs(config, env):  # each LoRA adapter, as a start would fetch it
                atarget = weights.target_dir(aspec, base)
                got = weights.inspect(aspec, atarget, aenv)
                if not got["present"] and (aspec.mode == "baked" and in_image
                                           or aspec.mode != "baked" and not got["would_download_from"]):
                    rec["problems"].append(f"adapter: {atarget} lacks {got['missing'] or 'the adapter'} and there is "
                                           "no source to download it from (a Hub adapter)")
        else:
            weights.ensure(spec, target, env, log=say)
            for aspec, aenv in weights.adapter_specs(config, env):  # LoRA adapters beside the weights, same checks
                weights.ensure(aspec, weights.target_dir(aspec, base), aenv, log=say)
        engine = list(decision.argv)
        argv, prelude = engine, []
        if settings.role == "worker":
            argv = lws.worker_argv(settings)
        elif settings.role == "leader":
            python = engine_python(engine, env) or "python3"
            prelude = [lws.head_argv(settings), lws.count_argv(python)]
        engine_env = engine_environment(argv, env, cache_dir=dry_tmp)
    except LaunchError as exc:
        if dry and rec["profile"] is None:
            rec["profile"] = env.get("PACKAGER_PROFILE") or None
        return fail(str(exc), exc.code)
    except OSError as exc:
        return fail(f"cannot prepare the engine: {exc}", EXIT_BAD_INPUT)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a mounted plan packager did not write
        return fail(f"the plan at {env.get(ENV_PLAN) or PLAN_PATH} is not a packager plan ({type(exc).__name__}: "
                    f"{exc}); write it with `packager chart` or `packager profiles --json`", EXIT_BAD_INPUT)
    if dry:
        importable, why = middleware_importable(argv, engine_env)
        # the record shows the paths a real start uses; the check above ran on the temp copy
        real = {k: v.replace(dry_tmp, env.get("PACKAGER_CACHE_DIR") or CACHE_DIR) for k, v in engine_env.items()}
        rec.update(prelude=prelude, argv=argv, env=record.launch_env(real),
                   pythonpath=record.pythonpath(real), middleware=middleware(argv))
        rec["checks"]["middleware_importable"] = importable
        if importable is False:
            rec["problems"].append(why)
        return EXIT_OK
    for name in DOWNLOAD_SECRETS:  # the weights are here: no token reaches ray or the engine
        os.environ.pop(name, None)
    try:
        if settings.role == "leader":
            lws.start_head(settings, prelude[1][0], log=say)
        elif settings.role == "worker":
            lws.wait_for_leader(settings, log=say)
    except LaunchError as exc:
        return fail(str(exc), exc.code)
    if settings.role != "worker":  # the engine's ready screen says what was planned, and from when
        engine_env[ENV_READY] = ready.handoff(profile["name"], decision.plan.get("why", ""),
                                              hardware.describe(hw_dict), STARTED)
    os.environ.update(engine_env)  # execvp passes os.environ on
    say("exec: " + " ".join(argv))
    execvp(argv[0], argv)
    return EXIT_OK  # only reached when execvp is replaced (tests)


if __name__ == "__main__":
    sys.exit(main())
