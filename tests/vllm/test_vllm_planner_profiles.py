"""Every vLLM profile the planner offers for the example manifests passes vLLM 0.33.0's contract."""
import pytest

from packager.vllm.contract import check_argv
from packager.vllm.planned import REPO, planner_cases

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
