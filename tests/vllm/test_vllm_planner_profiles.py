"""Every vLLM profile the planner offers for the example manifests passes vLLM 0.33.0's contract."""
import pytest

from packager.vllm.contract import check_argv
from tools.vllm_planned_cases import REPO, planner_cases

MODELS = sorted((REPO / "manifests" / "models").glob("*.yaml"))
HARDWARE = sorted((REPO / "manifests" / "hardware").glob("*.yaml"))


def test_examples_exist():
    assert MODELS and HARDWARE


@pytest.fixture(scope="module")
def cases():
    return planner_cases()


def test_planner_offers_vllm_profiles(cases):
    assert len(cases) >= 10
    assert {c["name"].split("@")[1].split(":")[0] for c in cases} & {"amd-mi300x-x8", "nvidia-h100-sxm-80gb-x8"}


def test_every_planned_vllm_argv_passes_check_argv(cases):
    bad = {c["name"]: check_argv(c["argv"]) for c in cases if check_argv(c["argv"])}
    assert not bad, bad


def test_low_memory_argvs_are_among_the_checked_ones(cases):
    """Low-memory profiles write --max-num-batched-tokens (and chunked prefill): the contract must see some."""
    low = [c for c in cases if "--max-num-batched-tokens" in c["argv"]]
    assert low, "no example pair plans a low-memory vLLM profile any more: add one so its argv stays checked"
    assert all("--enable-chunked-prefill" in c["argv"] for c in low
               if int(c["argv"][c["argv"].index("--max-num-batched-tokens") + 1])
               < int(c["argv"][c["argv"].index("--max-model-len") + 1]))
