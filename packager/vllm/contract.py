"""Check `vllm serve` command lines against vLLM 0.33.0's own parser.

Two checks:
- `check_argv(argv)`: against `data/serve_args-0.33.0.json`, a snapshot of
  vLLM's real parser (tools/snapshot_vllm_args.py). No vllm import; fast; used
  by tests and by the planner.
- `real_parser.real_check(argvs)`: vLLM's real parser plus `validate_parsed_serve_args`,
  only inside a venv that has vllm==0.33.0 installed:
      VLLM_TARGET_DEVICE=cpu PYTHONPATH=. VENV/bin/python -m packager.vllm.contract --real FILE.json

check_argv is deliberately stricter than argparse in three places, because a
locked plan should say exactly what it means: abbreviations (argparse's
prefix matching), repeated flags (vLLM only warns), and values vLLM checks
later in its config objects (kv-cache dtype, quantization method, executor
backend, memory fraction), which its parser accepts as free strings.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from packager.vllm.serve_argv import VLLM_VERSION, _load

SNAPSHOT = Path(__file__).parent / "data" / f"serve_args-{VLLM_VERSION}.json"

_HUMAN_INT = re.compile(r"(\d+(?:\.\d+)?)([kKmMgGtT])")
# argparse treats "-1", "-0.5" as values, not options, when no option looks numeric.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


@dataclass(frozen=True)
class Option:
    strings: tuple[str, ...]  # every accepted spelling, hidden ones included
    visible: tuple[str, ...]
    negative: tuple[str, ...]
    dest: str
    kind: str
    nargs: str | None
    choices: tuple[str, ...] | None
    value_type: str
    accepts_none: bool

    @property
    def takes_value(self) -> bool:
        return self.nargs != "0"


@dataclass(frozen=True)
class Snapshot:
    vllm_version: str
    generated: str
    options: tuple[Option, ...]
    by_string: dict[str, Option]
    positionals: tuple[Option, ...]
    allow_abbrev: bool

    @property
    def long_strings(self) -> list[str]:
        return sorted(s for s in self.by_string if s.startswith("--"))

    @property
    def visible_long_strings(self) -> list[str]:
        return sorted({s for o in self.options for s in o.visible if s.startswith("--")})


@lru_cache(maxsize=None)
def load_snapshot(path: str | None = None) -> Snapshot:
    raw = json.loads(Path(path or SNAPSHOT).read_text(encoding="utf-8"))
    opts: list[Option] = []
    for r in raw["options"]:
        opts.append(Option(
            strings=tuple(r["option_strings"]) + tuple(r.get("hidden_option_strings", [])),
            visible=tuple(r["option_strings"]),
            negative=tuple(r.get("negative_option_strings", [])),
            dest=r["dest"], kind=r["kind"], nargs=r["nargs"],
            choices=None if r["choices"] is None else tuple(r["choices"]),
            value_type=r["value_type"], accepts_none=bool(r["accepts_none"]),
        ))
    by_string = {s: o for o in opts for s in o.strings}
    positionals = tuple(o for o in opts if not o.strings)
    return Snapshot(vllm_version=str(raw["vllm_version"]), generated=raw["generated"],
                    options=tuple(opts), by_string=by_string, positionals=positionals,
                    allow_abbrev=bool(raw.get("allow_abbrev", True)))


def _type_problem(flag: str, value: str, opt: Option) -> str | None:
    """Why `value` would fail `opt`'s type function; None if it parses."""
    if opt.accepts_none and value in ("", "None"):
        return None
    vt = opt.value_type
    try:
        if vt == "int":
            int(value)
        elif vt == "float":
            float(value)
        elif vt in ("human_readable_int", "human_readable_int_or_auto"):
            v = value.strip()
            if vt.endswith("_or_auto") and (v == "-1" or v.lower() == "auto"):
                return None
            m = _HUMAN_INT.fullmatch(v)
            if m:
                if m.group(2).isupper() and "." in m.group(1):
                    return f"{flag}: {value!r}: decimals are not allowed with binary suffix {m.group(2)}"
            else:
                int(v)
        elif vt == "json":
            json.loads(value)
        elif vt == "json_or_str":
            if re.match(r"(?s)^\s*{.*}\s*$", value):
                json.loads(value)
    except ValueError:
        want = {"human_readable_int": "an integer (1k, 2M allowed)",
                "human_readable_int_or_auto": "an integer (1k, 2M allowed) or auto",
                "json": "JSON", "json_or_str": "JSON"}.get(vt, f"a{'n' if vt[0] in 'aeiou' else ''} {vt}")
        return f"{flag}: {value!r} is not {want}"
    return None


def _choice_problem(flag: str, value: str, opt: Option) -> str | None:
    if opt.choices is None or (opt.accepts_none and value in ("", "None")):
        return None
    norm = value
    try:  # argparse compares after the type function: "08" -> 8 for int choices
        if opt.value_type == "int":
            norm = str(int(value))
        elif opt.value_type == "float":
            norm = str(float(value))
    except ValueError:
        return None  # the type problem is reported already
    if norm in opt.choices:
        return None
    close = difflib.get_close_matches(value, opt.choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{flag}: invalid choice {value!r}{hint}; choose from {list(opt.choices)}"


def _config_problems(values: dict[str, list[str]], flags: set[str]) -> list[str]:
    """Values vLLM's parser takes as free strings but its config objects reject."""
    d = _load("defaults.yaml")
    out: list[str] = []
    for v in values.get("kv_cache_dtype", []):
        if v not in d["kv_cache_dtypes"]["values"]:
            close = difflib.get_close_matches(v, d["kv_cache_dtypes"]["values"], n=1)
            out.append(f"--kv-cache-dtype: {v!r} is not a vLLM {VLLM_VERSION} cache dtype"
                       + (f" (did you mean {close[0]!r}?)" if close else ""))
    q = d["quantization"]
    for v in values.get("quantization", []):
        if v in ("", "None"):
            continue
        if v not in q["methods"]:
            close = difflib.get_close_matches(v, q["methods"], n=1)
            out.append(f"--quantization: {v!r} is not a vLLM {VLLM_VERSION} method"
                       + (f" (did you mean {close[0]!r}?)" if close else ""))
        elif v in q["deprecated"] and "allow_deprecated_quantization" not in flags:
            out.append(f"--quantization: {v!r} is deprecated in vLLM {VLLM_VERSION} "
                       "and needs --allow-deprecated-quantization")
    backends = d["distributed_executor_backends"]["values"]
    for v in values.get("distributed_executor_backend", []):
        if v not in ("", "None") and v not in backends:
            out.append(f"--distributed-executor-backend: {v!r} is not one of {backends}")
    for v in values.get("gpu_memory_utilization", []):
        try:
            if not 0 < float(v) <= 1:  # CacheConfig: Field(gt=0, le=1)
                out.append(f"--gpu-memory-utilization: {v} is outside (0, 1]")
        except ValueError:
            pass
    return out


def _normalise(arg: str) -> str:
    """FlexibleArgumentParser: underscores -> dashes in the flag name (before '.' / '=')."""
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    head, dot, tail = name[2:].partition(".")
    return "--" + head.replace("_", "-") + dot + tail + eq + value


def _lookup(snap: Snapshot, flag: str) -> tuple[Option | None, str | None]:
    """(option, problem) for one flag as written."""
    if flag in snap.by_string:
        return snap.by_string[flag], None
    if flag.startswith("--") and snap.allow_abbrev:
        hits = sorted({o.visible[0] if o.visible else s for s, o in snap.by_string.items()
                       if s.startswith(flag)})
        if len(hits) == 1:
            opt = next(o for s, o in snap.by_string.items() if s.startswith(flag))
            return opt, (f"{flag}: abbreviation of {hits[0]} (argparse accepts it, "
                         "but a later vLLM flag can make it ambiguous); write it in full")
        if len(hits) > 1:
            return None, f"{flag}: ambiguous abbreviation, could be {', '.join(hits[:6])}"
    pool = snap.visible_long_strings if flag.startswith("--") else sorted(snap.by_string)
    close = difflib.get_close_matches(flag, pool, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return None, f"{flag}: not a vLLM {snap.vllm_version} serve option{hint}"


def _is_value(tok: str) -> bool:
    return not tok.startswith("-") or bool(_NEGATIVE_NUMBER.match(tok)) or tok == "-"


def check_argv(argv: list[str], snapshot: Snapshot | None = None) -> list[str]:
    """Problems with a `vllm serve` argv for vLLM 0.33.0; [] means it parses and validates."""
    snap = snapshot or load_snapshot()
    problems: list[str] = []
    if not isinstance(argv, (list, tuple)) or not all(isinstance(a, str) for a in argv):
        return ["argv must be a list of strings"]
    if list(argv[:2]) != ["vllm", "serve"]:
        return [f"argv must start with ['vllm', 'serve'], got {list(argv[:2])}"]
    args = [_normalise(a) for a in argv[2:]]

    model: str | None = None
    seen: dict[str, int] = {}
    values: dict[str, list[str]] = {}
    bools: dict[str, bool] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if _is_value(tok):
            if model is None and not seen:
                model = tok
            elif model is None:
                # argparse would still take it as model_tag, but vLLM requires
                # the model first when --served-model-name is present.
                model = tok
                problems.append(f"{tok!r}: the model must be the first argument after 'serve'")
            else:
                problems.append(f"{tok!r}: unexpected positional argument (the model is {model!r})")
            continue
        if tok == "-O" and i < len(args) and args[i] in {"0", "1", "2", "3"}:
            tok = "--optimization-level"
        elif tok.startswith("-O") and tok not in snap.by_string:
            tok = "--optimization-level=" + (tok[3:] if tok[2:3] == "=" else tok[2:])
        flag, eq, inline = tok.partition("=")
        dotted = "." in flag and flag.startswith("--")
        base = flag.split(".", 1)[0] if dotted else flag
        opt, problem = _lookup(snap, base)
        if problem:
            problems.append(problem)
        if opt is None:
            # Skip what is probably its value, so one typo gives one problem.
            if not eq and i < len(args) and _is_value(args[i]) and model is not None:
                i += 1
            continue
        if base == "--model":
            problems.append("--model: vllm serve takes the model as its first positional argument "
                            "(--model is deprecated there)")
        if not dotted:
            seen[opt.dest] = seen.get(opt.dest, 0) + 1
            if seen[opt.dest] == 2:
                problems.append(f"{base}: given more than once (the last one wins)")
        else:
            seen.setdefault(opt.dest, 0)
        if dotted:
            # --json-arg.key value: a piece of a JSON config; vLLM assembles it.
            if opt.value_type != "json":
                problems.append(f"{flag}: dotted keys only work for JSON options; {base} is not one")
            if not eq:
                if i < len(args):
                    i += 1
                else:
                    problems.append(f"{flag}: expected a value")
            continue
        if not opt.takes_value:
            if eq:
                problems.append(f"{base}: takes no value (got {inline!r})")
            bools[opt.dest] = base not in opt.negative  # --disable-x / --no-x set False
            continue
        vals: list[str] = []
        if eq:
            vals = [inline]
        else:
            if opt.nargs in (None, "?", "+", "*") or (opt.nargs or "").isdigit():
                while i < len(args) and _is_value(args[i]):
                    vals.append(args[i])
                    i += 1
                    if opt.nargs in (None, "?"):
                        break
                    if (opt.nargs or "").isdigit() and len(vals) == int(opt.nargs):
                        break
        if opt.nargs in (None, "+") and not vals:
            problems.append(f"{base}: expected a value" + (" or more" if opt.nargs == "+" else ""))
        if (opt.nargs or "").isdigit() and len(vals) != int(opt.nargs):
            problems.append(f"{base}: expected {opt.nargs} values, got {len(vals)}")
        for v in vals:
            p = _type_problem(base, v, opt) or _choice_problem(base, v, opt)
            if p:
                problems.append(p)
        values.setdefault(opt.dest, []).extend(vals)
    if model is None:
        problems.append("no model: vllm serve needs the model as its first positional argument")
    problems += _config_problems(values, set(seen))
    problems += _serve_rules(values, bools)
    return problems


def _serve_rules(values: dict[str, list[str]], bools: dict[str, bool]) -> list[str]:
    """The cross-flag rules of vllm/entrypoints/common/cli_args.py validate_parsed_serve_args (0.33.0)."""
    out: list[str] = []
    on = bools.get  # flags absent here keep vLLM's default, False for all of these
    if on("enable_auto_tool_choice") and not [v for v in values.get("tool_call_parser", []) if v not in ("", "None")]:
        out.append("--enable-auto-tool-choice requires --tool-call-parser")
    if on("enable_log_outputs") and not on("enable_log_requests"):
        out.append("--enable-log-outputs requires --enable-log-requests")
    for v in values.get("sse_keep_alive_interval", []):
        if v.lstrip("-").isdigit() and int(v) < 0:
            out.append("--sse-keep-alive-interval must be >= 0 (0 disables keep-alive comments)")
    if on("enable_per_request_metrics") and on("disable_log_stats"):
        out.append("--enable-per-request-metrics requires engine statistics; remove --disable-log-stats")
    if on("grpc") and values.get("grpc_port"):
        out.append("--grpc and --grpc-port are mutually exclusive")
    return out


# --- command line --------------------------------------------------------------

def read_cases(path: str | Path) -> list[dict[str, Any]]:
    """Cases from JSON: [argv, ...], [{"name", "argv", "expect_valid"}...] or {"cases": [...]}."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(raw, dict):
        raw = raw.get("cases", raw.get("argvs", []))
    cases = []
    for n, item in enumerate(raw):
        if isinstance(item, list):
            item = {"argv": item}
        valid = item.get("expect_valid", True)
        # expect_valid_real: where check_argv is stricter than vLLM on purpose.
        cases.append({"name": item.get("name", f"case{n}"), "argv": item["argv"],
                      "expect_valid": valid, "expect_valid_real": item.get("expect_valid_real", valid)})
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m packager.vllm.contract",
                                 description="Check vllm serve argvs against vLLM " + VLLM_VERSION)
    ap.add_argument("files", nargs="+", help="JSON files of argvs (see read_cases)")
    ap.add_argument("--real", action="store_true",
                    help="also run vLLM's real parser (needs vllm==%s installed)" % VLLM_VERSION)
    a = ap.parse_args(argv)
    cases = [c for f in a.files for c in read_cases(f)]
    snap_results = [check_argv(c["argv"]) for c in cases]
    if a.real:
        from packager.vllm.real_parser import real_check, snapshot_drift
    real_results = real_check([c["argv"] for c in cases]) if a.real else None
    failures = 0
    for n, c in enumerate(cases):
        checks = [("snapshot", snap_results[n])]
        if real_results is not None:
            checks.append(("vllm", real_results[n]))
        for label, probs in checks:
            ok = not probs
            expect = c["expect_valid"] if label == "snapshot" else c["expect_valid_real"]
            if ok != expect:
                failures += 1
                want = "valid" if expect else "invalid"
                print(f"FAIL {c['name']} [{label}]: expected {want}; problems: {probs}")
            else:
                print(f"ok   {c['name']} [{label}]" + (f": {probs[0]}" if probs else ""))
    if a.real:
        drift = snapshot_drift()
        for d in drift:
            print("DRIFT", d)
        failures += len(drift)
    print(f"{len(cases)} argvs, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
