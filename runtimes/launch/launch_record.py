"""The launch record: what a start would exec, printed as one JSON object by the dry run
(PACKAGER_DRY_RUN=1). Field names and meanings: runtimes.layout.RECORD_FIELDS."""
from __future__ import annotations

import os
import re
from typing import Mapping

from runtimes.layout import RECORD_FIELDS, RECORD_SCHEMA, REDACTED

# The environment names that shape a launch; the rest of a container's env is noise here.
ENV_PREFIXES = ("PACKAGER_", "VLLM_", "HF_", "HUGGING_FACE_", "RAY_", "LWS_", "NCCL_", "CUDA_", "NVIDIA_",
                "HIP_", "ROCR_", "TRITON_", "OMP_", "XDG_")
ENV_NAMES = ("PATH", "PYTHONPATH", "HOME")
_SECRET = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.I)
_NOT_SECRET = re.compile(r"_(PATH|FILE|DIR)$", re.I)


def is_secret(name: str) -> bool:
    return bool(_SECRET.search(name)) and not _NOT_SECRET.search(name)


def launch_env(env: Mapping[str, str]) -> dict[str, str]:
    """The launch-relevant part of an environment, every secret's value replaced by REDACTED."""
    keep = {k: v for k, v in env.items() if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}
    return {k: (REDACTED if is_secret(k) and v else v) for k, v in sorted(keep.items())}


def new_record(role: str = "server") -> dict:
    rec = {name: None for name in RECORD_FIELDS}
    rec.update(schema=RECORD_SCHEMA, role=role, prelude=[], argv=[], env={}, pythonpath=[], middleware=[],
               checks={}, problems=[], ok=False, exit_code=None, in_image=False)
    return rec


def finish(rec: dict, code: int) -> dict:
    rec["exit_code"] = code
    rec["ok"] = code == 0 and not rec["problems"]
    return rec


def pythonpath(env: Mapping[str, str]) -> list[str]:
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
