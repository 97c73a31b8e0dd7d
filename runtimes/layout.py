"""File-layout conventions shared by the build (packager) and the runtime. No heavy imports."""
from __future__ import annotations

APP_DIR = "/opt/packager"
MODEL_DIR = f"{APP_DIR}/model"
PLAN_PATH = f"{APP_DIR}/plan.json"
IMAGE_CONFIG_PATH = f"{APP_DIR}/image.json"
CACHE_DIR = "/var/cache/packager"  # writable by the image's user (UID 1000)


def variant_dir(name: str) -> str:
    """Where a quantized variant's checkpoint lives in an image (baked) or on its volume (downloaded)."""
    return f"{MODEL_DIR}/variants/{name}"


def adapter_dir(name: str) -> str:
    """Where a LoRA adapter lives in an image (baked) or on its volume (downloaded): one directory
    per adapter, named by a digest of its served name (names may hold `/`)."""
    import hashlib

    return f"{MODEL_DIR}/adapters/{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def gguf_tokenizer_dir(gguf_file: str) -> str:
    """Beside `model.gguf`, `model.tokenizer/` holds its tokenizer converted once at build time.

    transformers rebuilds a tokenizer from GGUF metadata in ~3 s; from the saved files in ~0.2 s.
    """
    return gguf_file.removesuffix(".gguf") + ".tokenizer"


# -- the chart's mounts (the image's own paths above stay the fallback) ---------------------
PLAN_MOUNT_DIR = "/etc/packager"  # the plan ConfigMap
PLAN_MOUNT_PATH = f"{PLAN_MOUNT_DIR}/plan.json"

# -- volume-mode weights: one download per claim, shared by every replica ------------------
WEIGHTS_LOCK = ".packager-weights.lock"  # flock'ed while one pod downloads; the others wait
WEIGHTS_MARKER = ".packager-weights.json"  # written last (atomic rename): source + every file's digest, size, stat key

# -- the launcher's environment -------------------------------------------------------------
ENV_PLAN = "PACKAGER_PLAN"  # plan.json to launch from (the chart: the mounted ConfigMap)
ENV_IMAGE_CONFIG = "PACKAGER_IMAGE_CONFIG"
ENV_PROFILE = "PACKAGER_PROFILE"
ENV_DRY_RUN = "PACKAGER_DRY_RUN"  # 1: print the launch record (JSON) on stdout and exit instead of exec
ENV_HARDWARE = "PACKAGER_HARDWARE"  # KEY[:COUNT[xNODES]]: stands in for detection
ENV_DEVICE = "PACKAGER_DEVICE"  # cpu | cuda | rocm: the device family the image's engine uses
ENV_ROLE = "PACKAGER_ROLE"  # server | leader | worker (default: from the LeaderWorkerSet's variables)
ENV_WEIGHTS_MODE = "PACKAGER_WEIGHTS_MODE"  # baked | volume: the chart's weights.mode wins over the image's
ENV_MODEL_DIR = "PACKAGER_MODEL_DIR"  # volume mode: where the weights volume is mounted (downloads land there)
ENV_RAY_PORT = "PACKAGER_RAY_PORT"
ENV_READY = "PACKAGER_READY"  # JSON from whoever planned the start, for the ready screen (runtimes/ready.py)
ENV_RAY_JOIN_TIMEOUT = "PACKAGER_RAY_JOIN_TIMEOUT"  # seconds the leader waits for the whole group
# Set by the LeaderWorkerSet controller in every pod of a group (leader: worker index 0).
LWS_LEADER_ADDRESS = "LWS_LEADER_ADDRESS"
LWS_GROUP_SIZE = "LWS_GROUP_SIZE"
LWS_WORKER_INDEX = "LWS_WORKER_INDEX"

ROLES = ("server", "leader", "worker")
DEVICES = ("cpu", "cuda", "rocm")

# -- the launch record: PACKAGER_DRY_RUN=1 prints it, `packager rehearse` checks it ---------
RECORD_SCHEMA = 1
RECORD_FIELDS = (
    "schema",       # RECORD_SCHEMA
    "role",         # server | leader | worker
    "profile",      # the profile chosen (null: none fits)
    "runtime",      # cpu | triton | vllm
    "hardware",     # one line: what was detected, or PACKAGER_HARDWARE
    "hardware_source",  # "detected" | "PACKAGER_HARDWARE"
    "device",       # PACKAGER_DEVICE as read (null: unset)
    "plan_source",  # the plan.json read (the mounted ConfigMap, else the image's)
    "in_image",     # the image's launcher config was found (false: a rehearsal outside the image)
    "prelude",      # [argv, ...] the launcher runs before exec (the leader's Ray head)
    "argv",         # the final exec argv
    "env",          # the engine's environment (launch-relevant names), secrets REDACTED
    "pythonpath",   # the engine's PYTHONPATH entries
    "middleware",   # modules named by --middleware
    "checks",       # {name: true | false | null (could not check here)}
    "model_path",   # the path (or id) handed to the engine
    "weights",      # {mode, dir, present, missing, would_download_from}
    "ok",           # true: the real start would exec argv
    "exit_code",    # what the real start returns before exec (0: it execs)
    "problems",     # one line each; empty when ok
)
REDACTED = "REDACTED"
