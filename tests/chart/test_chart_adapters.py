"""LoRA adapters in charts and KServe objects (issue 22, item 5): `packager chart/kserve --adapter` hand
either runtime the adapters at their place in the image (vLLM's argv through vLLM's own parser), the
endpoint picker scores LoRA affinity when adapters are served, and an LLMInferenceService carries
spec.model.lora, checked against the KServe CRD; what cannot work is refused (exit 2, the field named)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chart_checks import by_kind, render, validate

from runtimes.layout import adapter_dir
from tests.lora_adapters import SMOL, write_adapter
from tests.vllm_real import real_check

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    write_adapter(root / "sql", SMOL, 1, rank=8)
    write_adapter(root / "chat", SMOL, 2, rank=16, targets=("q_proj", "v_proj"))
    return root


def chart_plan(run_cli, tmp_path, adapters, hardware) -> tuple[Path, dict]:
    code, out, err = run_cli("chart", "smollm2-135m-instruct", "--hardware", hardware, "--out", str(tmp_path / "out"),
                             "--adapter", f"sql={adapters / 'sql'}", "--adapter", f"chat={adapters / 'chat'}")
    assert code == 0, err
    chart = Path(out.strip())
    return chart, json.loads((chart / "plan.json").read_text())


def test_vllm_chart_passes_the_image_adapter_dirs_and_vllm_accepts_them(run_cli, tmp_path, adapters):
    from packager.vllm.contract import check_argv

    chart, plan = chart_plan(run_cli, tmp_path, adapters, "nvidia-l4")
    argv = plan["selected"]["engine_argv"]
    assert argv[:2] == ["vllm", "serve"] and "--enable-lora" in argv
    i = argv.index("--lora-modules")
    mods = [json.loads(x) for x in argv[i + 1:i + 3]]
    assert mods == [{"name": "sql", "path": adapter_dir("sql"), "base_model_name": BASE},
                    {"name": "chat", "path": adapter_dir("chat"), "base_model_name": BASE}]
    assert (argv[argv.index("--max-loras") + 1], argv[argv.index("--max-lora-rank") + 1],
            argv[argv.index("--max-cpu-loras") + 1]) == ("2", "16", "2")
    assert str(adapters) not in (chart / "plan.json").read_text()  # no build-host path in the chart
    assert check_argv(argv) == []
    r = real_check([{"name": "chart-lora", "argv": argv}], tmp_path)
    real = [ln for ln in r.stdout.splitlines() if "[vllm]" in ln]
    assert real and all(ln.startswith("ok") for ln in real), r.stdout + r.stderr


def test_fallback_chart_passes_the_same_dirs(run_cli, tmp_path, adapters):
    _, plan = chart_plan(run_cli, tmp_path, adapters, "cpu")
    argv = plan["selected"]["engine_argv"]
    assert argv[1:3] == ["-m", "runtimes.fallback"]
    i = argv.index("--lora-modules")
    assert argv[i + 1:i + 3] == [f"sql={adapter_dir('sql')}", f"chat={adapter_dir('chat')}"]


def test_the_endpoint_picker_scores_lora_affinity_when_adapters_are_served(run_cli, tmp_path, adapters):
    chart, _ = chart_plan(run_cli, tmp_path, adapters, "cpu")
    on = {"router": {"enabled": True}}

    def scorers(chart_dir: Path) -> list[str]:
        cm = [m for m in by_kind(render(chart_dir, on), "ConfigMap") if m["metadata"]["name"].endswith("-epp")][0]
        config = yaml.safe_load(cm["data"]["config.yaml"])
        assert {p["pluginRef"] for p in config["schedulingProfiles"][0]["plugins"]} == {p["type"] for p in config["plugins"]}
        return [p["type"] for p in config["plugins"]]

    assert "lora-affinity-scorer" in scorers(chart)
    code, out, err = run_cli("chart", "smollm2-135m-instruct", "--hardware", "cpu", "--out", str(tmp_path / "plain"))
    assert code == 0, err
    assert "lora-affinity-scorer" not in scorers(Path(out.strip()))


def test_llm_inference_service_gets_spec_model_lora(run_cli, tmp_path, adapters):
    code, out, err = run_cli("kserve", "smollm2-135m-instruct", "--hardware", "nvidia-l4", "--weights", "baked",
                             "--adapter", f"sql={adapters / 'sql'}", "--adapter", f"chat={adapters / 'chat'}")
    assert code == 0, err
    objs = [o for o in yaml.safe_load_all(out) if o]
    svc = objs[-1]
    assert svc["kind"] == "LLMInferenceService"
    assert svc["spec"]["model"]["lora"] == {
        "adapters": [{"name": "sql", "uri": f"file://{adapter_dir('sql')}"},
                     {"name": "chat", "uri": f"file://{adapter_dir('chat')}"}],
        "maxAdapters": 2, "maxRank": 16, "maxCpuAdapters": 2}
    for obj in objs:
        validate(obj)  # the CRD's schema (strict) and CEL rules, as an API server would


def test_refusals_name_the_field(run_cli, tmp_path, adapters):
    # KServe fetching the weights (volume) would not put adapters where the launcher reads them: baked only
    code, out, err = run_cli("kserve", "smollm2-135m-instruct", "--hardware", "nvidia-l4", "--pvc", "models/smol",
                             "--adapter", f"sql={adapters / 'sql'}")
    assert code == 2 and "adapters[0].source" in err and "--weights baked" in err and "Traceback" not in err
    # volume-mode images hold no adapter files, and the launcher downloads Hub adapters only
    code, out, err = run_cli("build", "smollm2-135m-instruct", "--hardware", "cpu", "--weights", "volume", "--no-image",
                             "--out", str(tmp_path / "vol"), "--adapter", f"sql={adapters / 'sql'}")
    assert code == 2 and "adapters[0].source" in err and not (tmp_path / "vol" / "smollm2-135m-instruct").exists()
    plan = tmp_path / "plan.json"
    plan.write_text("{}")
    code, out, err = run_cli("chart", "--plan", str(plan), "--adapter", f"sql={adapters / 'sql'}")
    assert code == 2 and "--adapter" in err
