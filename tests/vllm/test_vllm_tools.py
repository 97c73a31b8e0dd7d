"""vLLM profiles serve tool calls: without --enable-auto-tool-choice and --tool-call-parser, vLLM 0.33
answers every `tools` request with a 400 (LangChain's bind_tools included)."""
from __future__ import annotations

import pytest

from packager.planner import plan_files
from packager.vllm.serve_argv import tool_call_parser
from packager.vllm.contract import check_argv


@pytest.mark.parametrize("model,parser", [("llama-3.1-8b-instruct", "llama3_json"),
                                          ("qwen2.5-7b-instruct", "hermes"),
                                          ("mixtral-8x7b-instruct-v0.1", "mistral")])
def test_every_vllm_profile_names_the_models_tool_parser(model, parser):
    plan = plan_files(model, "nvidia-h100-sxm-80gb:8")
    vllm = [p for p in plan.candidates if p.runtime == "vllm"]
    assert vllm
    for p in vllm:
        argv = list(p.engine_argv)
        assert "--enable-auto-tool-choice" in argv
        assert argv[argv.index("--tool-call-parser") + 1] == parser
        assert check_argv(argv) == []  # vLLM 0.33.0's parser (snapshot) takes it


def test_an_unknown_family_gets_the_generic_hermes_parser():
    assert tool_call_parser("someone/some-model") == "hermes"
    assert tool_call_parser("meta-llama/Llama-3.3-70B-Instruct") == "llama3_json"
