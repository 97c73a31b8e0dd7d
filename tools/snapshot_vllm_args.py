"""Dump vLLM's own `vllm serve` parser to packager/vllm/data/serve_args-<version>.json.

Run inside the vLLM venv (never in the project's environment):

    VLLM_TARGET_DEVICE=cpu ~/.cache/packager/venv-vllm/bin/python tools/snapshot_vllm_args.py  # the venv .ci/vllm_contract.sh makes

The snapshot lets `packager.vllm.contract.check_argv` check command lines with
no vllm import. The parser is vLLM's real one, built the way `vllm serve`
builds it (`ServeSubcommand.subparser_init` -> `make_arg_parser`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Types vLLM wraps in closures; the inner type is what a value must parse as.
_WRAPPERS = {"optional_type.<locals>._optional_type", "parse_type.<locals>._parse_type"}


def _value_type(t) -> tuple[str, bool]:
    """(name of the type a value must parse as, whether "None"/"" is accepted)."""
    if t is None:
        return "str", False
    qn = getattr(t, "__qualname__", type(t).__name__)
    if qn in _WRAPPERS:
        inner = None
        for cell in t.__closure__ or ():
            if callable(cell.cell_contents):
                inner = cell.cell_contents
        name, _ = _value_type(inner)
        return name, qn.startswith("optional_type") or _
    if t in (int, float, str, bool):
        return t.__name__, False
    mod = getattr(t, "__module__", "")
    if qn == "loads" and mod == "json":
        return "json", False
    if qn.endswith("parse_dataclass"):
        return "json", False  # a config dataclass given as JSON (or dotted keys)
    if qn == "union_dict_and_str":
        return "json_or_str", True
    if qn in ("human_readable_int", "human_readable_int_or_auto"):
        return qn, False
    return "callable:" + qn, False


def _s(v) -> str | None:
    if v is None or v is argparse.SUPPRESS:
        return None
    if isinstance(v, (list, tuple)):
        return json.dumps([str(x) for x in v])
    return str(v)


def _summary(text: str | None) -> str:
    line = " ".join((text or "").split("\n\n", 1)[0].split())
    return line if len(line) <= 200 else line[:197] + "..."


def build_serve_parser():
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    top = FlexibleArgumentParser(prog="vllm")
    subparsers = top.add_subparsers(required=False, dest="subparser")
    cmd = ServeSubcommand()
    serve = cmd.subparser_init(subparsers)
    return top, serve, cmd


def snapshot() -> dict:
    _top, serve, _cmd = build_serve_parser()
    groups = {}
    for g in serve._action_groups:
        for a in g._group_actions:
            groups[id(a)] = g.title
    deprecated = {id(a) for a in getattr(serve, "_deprecated", set())}
    # Every string the parser accepts, including ones hidden from help (for
    # example --no-enable-prefix-caching, kept by EnableDisableAction).
    registered: dict[int, list[str]] = {}
    for s, a in serve._option_string_actions.items():
        registered.setdefault(id(a), []).append(s)
    options = []
    for a in serve._actions:
        vt, optional = _value_type(a.type)
        visible = list(a.option_strings)
        options.append({
            "option_strings": visible,
            "hidden_option_strings": sorted(set(registered.get(id(a), [])) - set(visible)),
            # Strings that set a boolean flag to False (--disable-x, --no-x).
            "negative_option_strings": sorted(getattr(a, "negative_option_strings", ()) or ()),
            "dest": a.dest,
            "kind": type(a).__name__,
            "nargs": None if a.nargs is None else str(a.nargs),
            "choices": None if a.choices is None else [str(c) for c in a.choices],
            "type": None if a.type is None else getattr(a.type, "__qualname__", type(a.type).__name__),
            "value_type": vt,
            "accepts_none": optional,
            "default": _s(a.default),
            "required": bool(a.required),
            "deprecated": id(a) in deprecated or getattr(a, "deprecated", False) is True,
            "group": groups.get(id(a)),
            "help": _summary(a.help if a.help is not argparse.SUPPRESS else None),
        })
    options.sort(key=lambda o: (o["option_strings"][:1] or [""], o["dest"]))
    version = importlib.metadata.version("vllm")
    return {
        "vllm_version": version,
        "generated": _dt.date.today().isoformat(),
        "generator": "tools/snapshot_vllm_args.py",
        "parser": "vllm.entrypoints.cli.serve.ServeSubcommand.subparser_init -> "
                  "vllm.entrypoints.common.cli_args.make_arg_parser",
        "vllm_target_device": os.environ.get("VLLM_TARGET_DEVICE"),
        "python": platform.python_version(),
        # FlexibleArgumentParser keeps argparse's prefix matching (allow_abbrev).
        "allow_abbrev": bool(serve.allow_abbrev),
        "option_count": len(options),
        "options": options,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="output path (default packager/vllm/data/serve_args-<version>.json)")
    args = ap.parse_args(argv)
    snap = snapshot()
    out = args.out or REPO / "packager" / "vllm" / "data" / f"serve_args-{snap['vllm_version']}.json"
    out.write_text(json.dumps(snap, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({snap['option_count']} options, vLLM {snap['vllm_version']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
