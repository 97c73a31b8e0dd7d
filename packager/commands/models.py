"""Models by name: `packager models` lists the known manifests; `packager init` drafts a new one."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from packager.errors import UserError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "fp8": 1, "int4": 0.5}


def _params(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _size(facts) -> tuple[int, bool]:
    """Bytes of the weights: measured when they are on this machine, else parameters x dtype (estimated)."""
    if facts.local_path:
        p = Path(facts.local_path)
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        return sum(f.stat().st_size for f in files), False
    return int(facts.parameters * DTYPE_BYTES.get(facts.weight_dtype, 2)), True


def _source(src: dict) -> str:
    if src.get("kind") == "huggingface":
        return f"hf:{src['repo']}@{str(src.get('revision', ''))[:12]}"
    if src.get("kind") == "python_package":
        return f"package:{src['package']}"
    return f"path:{src.get('path')}"


def model_rows() -> tuple[list[dict], list[str]]:
    """One row per known model; a manifest that does not load is reported, not fatal."""
    from packager.manifests import load_model
    from packager.manifests.resolve import known_models

    rows, errors = [], []
    for name, (path, origin) in known_models().items():
        try:
            m = load_model(str(path))
        except UserError as exc:
            errors.append(str(exc))
            continue
        size, estimated = _size(m)
        rows.append({"name": name, "manifest": str(path), "origin": origin, "served_model_name": m.api_name,
                     "parameters": m.parameters, "active_parameters": m.active_parameters, "size_bytes": size,
                     "size_estimated": estimated, "context_length": m.context_length, "max_positions": m.max_positions,
                     "format": m.format, "source": m.source, "local": m.local_path is not None, "license": m.license})
    return rows, errors


def models(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the models known by name: shipped examples and those under PACKAGER_MODELS."""
    rows, errors = model_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = [("NAME", "PARAMS", "SIZE", "CONTEXT", "FORMAT", "SOURCE")]
        for r in rows:
            params = _params(r["parameters"]) + ("*" if r["active_parameters"] != r["parameters"] else "")
            size = ("~" if r["size_estimated"] else "") + f"{r['size_bytes'] / 2**30:.2f} GiB"
            ctx = f"{r['context_length']}/{r['max_positions']}"
            where = _source(r["source"]) + ("" if r["local"] or r["source"].get("kind") == "huggingface" else " (not installed)")
            table.append((r["name"], params, size, ctx, r["format"], where))
        widths = [max(len(row[i]) for row in table) for i in range(6)]
        right = (False, True, True, True, False, False)
        lines = ["  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip() for row in table]
        lines.append("\nCONTEXT: served / model maximum; ~: estimated from parameters (weights not here); "
                     "*: mixture of experts (all experts)")
        typer.echo("\n".join(lines))
    for e in errors:
        typer.echo(f"error: {e}", err=True)
    if errors:
        raise typer.Exit(2)


def init(
    source: str = typer.Argument(..., help="A Hugging Face model directory, a .gguf file, a Hub repo id ORG/NAME[@REV], "
                                 "or a PEFT adapter directory (writes its `adapters:` entry)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the manifest here (default: stdout)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit); pinned to its commit."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out when it exists."),
    served_name: Optional[str] = typer.Option(None, "--served-name", help="The name clients send as `model` "
                                              "(default: the Hub repo id the model's metadata names; an adapter's: its directory name)."),
) -> None:
    """Write a model manifest from the model's files: architecture, parameters, sha256, license."""
    from packager.init import init_manifest

    if out is not None and out.exists() and not force:
        raise UserError("exists; not overwritten", file=str(out), field="--out", hint="pass --force or another --out")
    text = init_manifest(source, revision, out, served_name)
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)  # nothing half-written
    typer.echo(f"wrote {out}", err=True)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("init")(init)
