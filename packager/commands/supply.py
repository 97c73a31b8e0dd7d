"""The supply chain: `keys init`, `bundle`, `verify`, `import`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from packager.commands import adapter_option

keys_app = typer.Typer(no_args_is_help=True, help="Signing keys for bundles (weights, image, chart).")


@keys_app.command("init")
def keys_init(out: Path = typer.Option(..., "--out", help="Directory for the key pairs (created 0700; never overwritten).")) -> None:
    """Make the three key pairs: EC P-256 (weights), OpenPGP (image simple signing), OpenPGP (Helm chart)."""
    from packager.supply.keys import init_keys

    keys = init_keys(out)
    typer.echo(f"keys: {out} (private parts mode 0600: keep them off every image, bundle and host you ship to)")
    typer.echo(f"  weights (model-signing, EC P-256): {keys.model}")
    typer.echo(f"  image   (simple signing, OpenPGP): {keys.image}")
    typer.echo(f"  chart   (Helm provenance, OpenPGP): {keys.chart}")


def bundle(
    model: Optional[str] = typer.Argument(None, help="Model manifest or name (default: the embedded default model)."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Hardware manifest or shorthand."),
    keys: Path = typer.Option(..., "--keys", help="Directory from `packager keys init` (private parts needed)."),
    out: Path = typer.Option(..., "--out", help="The bundle file to write (.tar)."),
    base_image: Optional[str] = typer.Option(None, "--base-image", help="FROM image of the build."),
    registry: str = typer.Option("127.0.0.1:5000", "--registry", help="Working registry the parts are pushed to and signed in."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Image tag (default: the build's, with -oci)."),
    adapter: list[str] = adapter_option(),
) -> None:
    """Build, sign and pack image, weights artifact, chart, plan, SBOM and signatures into one OCI layout tar."""
    from packager.image.release import BundleRequest, bundle as run

    run(BundleRequest(model=model, hardware=hardware, keys=keys, out=out, base_image=base_image,
                      registry=registry, tag=tag, adapters=tuple(adapter)), log=_log)


_EXPECT_VERSION = "Refuse a release of any other version (its tag), e.g. an older one, however validly signed."
_EXPECT_IDENTITY = "Refuse a release of any other identity (its repository, e.g. packager/MODEL), however validly signed."


def verify(
    source: str = typer.Argument(..., help="A bundle .tar, or an imported image reference HOST:PORT/REPO:TAG."),
    keys: Path = typer.Option(..., "--keys", help="Directory holding the public keys (*.pub)."),
    expect_version: Optional[str] = typer.Option(None, "--expect-version", help=_EXPECT_VERSION),
    expect_identity: Optional[str] = typer.Option(None, "--expect-identity", help=_EXPECT_IDENTITY),
) -> None:
    """The signed release statement, then every part against it (public keys only). Exit 0: all pass; 1: one failed; 2: bad input."""
    from packager.supply.verify import Expect, verify_source

    report = verify_source(source, keys, Expect(expect_version, expect_identity))
    _print_report(report)
    typer.echo(f"verify: all {len(report.checks)} checks passed")


def _print_report(report) -> None:
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        typer.echo("verify: FAILED: " + "; ".join(report.failures() or ["no release statement verified"]), err=True)
        raise typer.Exit(1)


def import_(
    bundle_file: Path = typer.Argument(..., help="The bundle .tar from `packager bundle`."),
    registry: str = typer.Option(..., "--registry", help="Registry to restore into: HOST:PORT, or HOST:PORT/PREFIX."),
    keys: Path = typer.Option(..., "--keys", help="Public keys (*.pub): the bundle is verified before anything is pushed."),
    signatures: Optional[Path] = typer.Option(None, "--signatures-dir",
                                              help="Where the image's signature files, policy.json and registries.d go "
                                                   "(default: BUNDLE.signatures/ beside the bundle)."),
    expect_version: Optional[str] = typer.Option(None, "--expect-version", help=_EXPECT_VERSION),
    expect_identity: Optional[str] = typer.Option(None, "--expect-identity", help=_EXPECT_IDENTITY),
) -> None:
    """Verify a bundle, then restore every part into PREFIX/IDENTITY:TAG of a registry with its digests unchanged."""
    from packager.supply.importer import NotImported, import_bundle
    from packager.supply.verify import Expect

    sigdir = signatures or bundle_file.with_name(bundle_file.name.removesuffix(".tar") + ".signatures")
    try:
        result = import_bundle(bundle_file, registry, keys, sigdir, Expect(expect_version, expect_identity), log=_log)
    except NotImported as exc:
        typer.echo("import: nothing pushed: the bundle does not verify", err=True)
        _print_report(exc.report)
        raise typer.Exit(1)
    typer.echo(f"signatures: {result.signatures_dir} (policy.json and registries.d/ for podman, skopeo, CRI-O)")
    for role, ref in result.refs.items():
        typer.echo(f"{role}: {ref}")


def _log(msg: str) -> None:
    if not msg.startswith("#"):  # BuildKit's progress lines stay out of the bundle log
        typer.echo(msg, err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.command("bundle")(bundle)
    app.command("verify")(verify)
    app.command("import")(import_)
