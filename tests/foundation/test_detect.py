"""Hardware detection: recorded NVML answers and KFD sysfs trees (tests/fixtures/hardware) replayed
through the same readers as the real drivers; cards identified by PCI id / gfx target, memory measured."""
import json
from pathlib import Path

import pytest

from packager.catalog import catalog
from packager.detect import RecordedNvml, Sources, describe_hardware, detect_hardware
from packager.detect.cpu import cpu_model
from packager.detect.kfd import gfx_target, read_kfd
from packager.detect.nvml import read_nvidia, record, system_nvml
from packager.manifests.machine import this_machine
from packager.errors import UserError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hardware"
NVML, KFD = FIXTURES / "nvml", FIXTURES / "kfd"
NO_KFD = "/nonexistent/kfd/nodes"


def nvidia(answer: str | dict, environ: dict | None = None):
    rec = RecordedNvml(answer) if isinstance(answer, dict) else RecordedNvml.from_file(NVML / f"{answer}.json")
    return this_machine(environ or {}, Sources(nvml=rec, kfd_root=NO_KFD))


def amd(tree: str | Path):
    root = tree if isinstance(tree, Path) else KFD / tree / "nodes"
    return detect_hardware(Sources(nvml=None, kfd_root=root))


def answer(name: str) -> dict:
    return json.loads((NVML / f"{name}.json").read_text())


# fixture: (catalog key, devices, measured GiB, compute capability)
NVIDIA_CARDS = {
    "gh200": ("nvidia-gh200", 1, 95.6, 9.0),
    "h200": ("nvidia-h200", 8, 140.4, 9.0),
    "h100-sxm": ("nvidia-h100-sxm-80gb", 8, 79.6, 9.0),
    "h100-pcie": ("nvidia-h100-pcie-80gb", 2, 79.6, 9.0),
    "l40": ("nvidia-l40", 1, 45.0, 8.9),
    "l40s": ("nvidia-l40s", 4, 45.0, 8.9),
    "l4": ("nvidia-l4", 1, 22.5, 8.9),
    "a10g": ("nvidia-a10g", 1, 22.5, 8.6),
}
AMD_CARDS = {"mi300x": ("amd-mi300x", 8, 192.0, "gfx942"), "rx7900xtx": ("amd-rx-7900xtx", 1, 24.0, "gfx1100")}


@pytest.mark.parametrize("fixture", sorted(NVIDIA_CARDS))
def test_nvidia_fixture_is_its_card_with_measured_memory(fixture):
    key, count, gib, cc = NVIDIA_CARDS[fixture]
    pool = nvidia(fixture).pools[0]
    acc = pool.accelerator
    assert (acc.key, pool.count, acc.memory_gib, acc.compute_capability) == (key, count, gib, cc)
    assert acc.name == answer(fixture)["devices"][0]["name"]  # the name NVML reports
    assert pool.resource_key == "nvidia.com/gpu"


@pytest.mark.parametrize("fixture", sorted(AMD_CARDS))
def test_amd_fixture_is_its_card_with_measured_memory(fixture):
    key, count, gib, gfx = AMD_CARDS[fixture]
    pool = amd(fixture).pools[0]
    assert (pool.accelerator.key, pool.count, pool.accelerator.memory_gib, pool.accelerator.gfx_target) == (key, count, gib, gfx)
    assert pool.resource_key == "amd.com/gpu"


def test_gh200_is_not_an_h200():
    acc = nvidia("gh200").pools[0].accelerator
    assert acc.key == "nvidia-gh200" and acc.memory_gib == 95.6  # 96 GB HBM3, not the H200's 141 GB
    assert "10de:2342" in acc.source


def test_l40_is_not_an_l4():
    acc = nvidia("l40").pools[0].accelerator
    assert acc.key == "nvidia-l40" and acc.memory_gib == 45.0 and acc.bandwidth_gbs == 864


def test_gfx_targets_keep_every_digit():
    assert [gfx_target(v) for v in (110000, 90402, 90010, 100300, 120001)] == \
        ["gfx1100", "gfx942", "gfx90a", "gfx1030", "gfx1201"]
    gpus = read_kfd(KFD / "rx7900xtx" / "nodes")
    assert [(g.gfx_target, g.pci_device, g.simd_count) for g in gpus] == [("gfx1100", 0x744C, 192)]
    acc = amd("rx7900xtx").pools[0].accelerator
    assert acc.gfx_target == "gfx1100" and acc.key not in ("gfx11", "amd-mi300x")


def test_a_name_that_contains_a_known_card_is_not_that_card():
    """An H100 NVL (PCI 10de:2321, 94 GB) says 'H100' in its name; it is not the 80 GB SXM row."""
    nvl = answer("h100-sxm")
    nvl["devices"] = [dict(d, name="NVIDIA H100 NVL", pciDeviceId="0x232110DE", pciSubSystemId="0x183910DE",
                           memory_total=95830 * 2**20) for d in nvl["devices"][:2]]
    acc = nvidia(nvl).pools[0].accelerator
    assert acc.key == "unknown-nvidia-2321" and acc.memory_gib == 93.6 and acc.compute_capability == 9.0


def test_unknown_nvidia_card_is_described_by_its_measured_specs():
    hw = nvidia("unknown-nvidia")
    pool, acc = hw.pools[0], hw.pools[0].accelerator
    assert acc.key == "unknown-nvidia-26b1" and acc.key not in catalog()
    assert (acc.name, pool.count, acc.memory_gib, acc.compute_capability) == ("NVIDIA RTX 6000 Ada Generation", 2, 48.0, 8.9)
    nv_rows = [a for a in catalog().values() if a.vendor == "nvidia"]
    assert acc.bandwidth_gbs == min(a.bandwidth_gbs for a in nv_rows)  # conservative, not a neighbour's row
    assert acc.fp8_tflops is None and "not in packager/catalog/gpu_ids.yaml" in acc.source
    text = describe_hardware(hw, cpu_model="Test CPU")
    assert text.startswith("GPU: 2 x NVIDIA RTX 6000 Ada Generation (unknown card") and "48.0 GiB measured, cc 8.9" in text


def test_unknown_amd_card_with_a_known_gfx_target_is_not_an_mi300x():
    """An MI325X is gfx942 like the MI300X, with 256 GB: its own PCI id makes it unknown, its memory is its own."""
    acc = amd("unknown-amd").pools[0].accelerator
    assert acc.key == "unknown-amd-gfx942-74a5" and acc.gfx_target == "gfx942" and acc.memory_gib == 256.0


def test_one_device_id_several_skus_needs_the_simd_count(tmp_path):
    """0x744c is the RX 7900 XTX, XT and GRE: an XT (84 CUs = simd_count 168, 20 GB) is not an XTX."""
    node = tmp_path / "1"
    (node / "mem_banks" / "0").mkdir(parents=True)
    (node / "properties").write_text("simd_count 168\ngfx_target_version 110000\nvendor_id 4098\ndevice_id 29772\n")
    (node / "mem_banks" / "0" / "properties").write_text(f"heap_type 1\nsize_in_bytes {20464 * 2**20}\n")
    (node / "mem_banks" / "1").mkdir()
    (node / "mem_banks" / "1" / "properties").write_text(f"heap_type 0\nsize_in_bytes {64 * 2**30}\n")  # system RAM
    acc = amd(tmp_path).pools[0].accelerator
    assert acc.key == "unknown-amd-gfx1100-744c" and acc.memory_gib == 20.0


def test_measured_memory_wins_over_the_catalog_and_the_description_says_so():
    big = answer("h100-sxm")
    big["devices"] = [dict(d, memory_total=94 * 2**30) for d in big["devices"]]
    hw = nvidia(big)
    acc = hw.pools[0].accelerator
    assert acc.key == "nvidia-h100-sxm-80gb" and acc.memory_gib == 94.0
    assert acc.vllm_memory_gib == pytest.approx(94.0 * 79.22 / 79.6, abs=0.01)  # CUDA's view scales with it
    assert "measured wins" in acc.source
    assert "94.0 GiB measured, the catalog says 79.6 GiB, cc 9.0" in describe_hardware(hw, cpu_model="x")


def test_mixed_cards_pool_the_most_numerous_kind():
    mixed = answer("l4")
    mixed["devices"] = mixed["devices"] * 2 + answer("a10g")["devices"]
    pool = nvidia(mixed).pools[0]
    assert (pool.accelerator.key, pool.count) == ("nvidia-l4", 2) and "1 other GPU" in pool.accelerator.source


def test_no_driver_means_the_cpu():
    pool = nvidia("no-driver").pools[0]
    assert pool.accelerator.key == "cpu" and pool.count == 1 and pool.memory_gib > 0


@pytest.mark.parametrize("flags,bf16", [("fpu avx2 avx512f", False), ("fpu avx2 avx512f avx512_bf16", True),
                                        ("fpu avx2 amx_tile amx_bf16", True)], ids=["avx512", "avx512_bf16", "amx"])
def test_a_cpu_with_native_bf16_gets_bf16_tflops(tmp_path, flags, bf16):
    """Only native bf16 (AVX512-BF16, AMX) makes bf16 matmuls pay: the detected CPU says so, at twice
    its fp32 rate; the encoder planner plans bf16 only then (test_embed_plan)."""
    from packager.detect import cpu_pool

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    acc = cpu_pool(str(info)).accelerator
    assert acc.key == "cpu"
    if bf16:
        assert acc.bf16_tflops == round(2 * acc.fp32_tflops_per_core * cpu_pool(str(info)).cpu_cores, 3)
        assert "native bf16" in acc.source
    else:
        assert acc.bf16_tflops is None


def test_the_real_pynvml_runs_through_the_same_reader():
    """This machine has nvidia-ml-py and no NVIDIA driver: the real module answers through read_nvidia."""
    real = system_nvml()
    assert real is not None, "nvidia-ml-py (pynvml) is a dependency of detection"
    assert read_nvidia(real) == []
    hw = detect_hardware(Sources())
    assert hw.pools[0].accelerator.key in ("cpu",) or hw.pools[0].accelerator.vendor in ("nvidia", "amd")


def test_a_recording_replays_as_recorded():
    rec = answer("gh200")
    again = record(RecordedNvml(rec))
    assert again["devices"] == rec["devices"]


def test_every_table_row_names_a_catalog_key_and_a_source():
    from packager.detect.identify import id_table

    table = id_table()
    seen = set()
    for row in table.rows:
        assert row.key in catalog() and row.source, row
        ident = (row.vendor, row.device, row.subsystems, row.gfx, row.simd_count)
        assert ident not in seen, f"two rows claim {ident}"
        seen.add(ident)
    assert {"nvidia-gh200", "nvidia-l40", "amd-rx-7900xtx"} <= {r.key for r in table.rows}


# -- PACKAGER_HARDWARE stands in for detection -------------------------------------------------

def test_packager_hardware_stands_in_for_detection(monkeypatch):
    hw = nvidia("l4", environ={"PACKAGER_HARDWARE": "nvidia-h100-sxm-80gb:8x2"})  # the L4 is not consulted
    pool = hw.pools[0]
    assert (pool.accelerator.key, pool.count, pool.nodes) == ("nvidia-h100-sxm-80gb", 8, 2)
    assert "a stand-in, not detected" in describe_hardware(hw)
    monkeypatch.setenv("PACKAGER_HARDWARE", "amd-mi300x:8")
    assert this_machine().pools[0].accelerator.key == "amd-mi300x"  # the process environment by default
    assert detect_hardware().pools[0].accelerator.key != "amd-mi300x"  # detection itself only measures
    monkeypatch.setenv("PACKAGER_HARDWARE", "  ")
    assert this_machine().pools[0].accelerator.key != "amd-mi300x"  # blank: detect as usual


@pytest.mark.parametrize("bad", ["nvidia-h101:8", "h100:x", "cpu:2", "nvidia-l4:0"])
def test_a_bad_packager_hardware_names_the_variable_and_the_fix(bad):
    with pytest.raises(UserError) as err:
        nvidia("no-driver", environ={"PACKAGER_HARDWARE": bad})
    text = str(err.value)
    assert err.value.field == "PACKAGER_HARDWARE" and repr(bad) in text and "unset PACKAGER_HARDWARE" in text


def test_a_bad_packager_hardware_is_exit_2_without_traceback(run_cli, monkeypatch):
    from tests.conftest import MODELS

    monkeypatch.setenv("PACKAGER_HARDWARE", "nvidia-h101:8")
    code, out, err = run_cli("profiles", str(MODELS / "llama-3.1-8b-instruct.yaml"))
    assert code == 2 and "PACKAGER_HARDWARE" in err and "Traceback" not in err + out


# -- the description a person reads, and planning on what was detected -------------------------

def test_description_of_a_detected_machine(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\n")
    assert cpu_model(str(info)) == "AMD EPYC 9B14"
    hw = nvidia("h100-sxm")
    cores, ram = hw.pools[0].cpu_cores, hw.pools[0].memory_gib
    assert describe_hardware(hw, cpu_model="AMD EPYC 9B14") == (
        f"GPU: 8 x NVIDIA H100 80GB HBM3 (nvidia-h100-sxm-80gb, 79.6 GiB measured, cc 9.0); "
        f"CPU: AMD EPYC 9B14, {cores} cores, {ram:.1f} GiB RAM")
    cpu_only = describe_hardware(nvidia("no-driver"))
    assert cpu_only.startswith(f"CPU: {cpu_model()}, ") and "x86-64 / arm64" not in cpu_only
    assert describe_hardware(hw.to_dict(), cpu_model="AMD EPYC 9B14") == describe_hardware(hw, cpu_model="AMD EPYC 9B14")


@pytest.mark.parametrize("source", ["nvml:unknown-nvidia", "kfd:unknown-amd", "kfd:rx7900xtx", "nvml:gh200"])
def test_the_planner_plans_on_detected_cards(source):
    from packager.manifests import load_model
    from packager.planner import make_plan
    from packager.planner.types import PlanRequest
    from tests.conftest import MODELS

    kind, name = source.split(":")
    hw = nvidia(name) if kind == "nvml" else amd(name)
    model = load_model(str(MODELS / "llama-3.1-8b-instruct.yaml"))
    plan = make_plan(PlanRequest(model=model, hardware=hw, objective="throughput"))
    assert plan.candidates or plan.rejected
    data = json.dumps(plan.to_dict())  # the plan an image records must serialise
    assert hw.pools[0].accelerator.key in data
    if name == "unknown-nvidia":  # 2 x 48 GB, cc 8.9: an 8B bf16 model fits, planned conservatively
        assert plan.selected is not None and plan.selected.candidate.pool.accelerator.key == "unknown-nvidia-26b1"


def test_the_recorder_answers_in_the_replay_format():
    """`python3 -m packager.detect.record` on this machine: a recording RecordedNvml replays, or a one-line reason."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "packager.detect.record"], capture_output=True, text=True, timeout=60)
    if done.returncode == 0:
        replayed = read_nvidia(RecordedNvml(json.loads(done.stdout)))
        assert replayed and all(g.pci_vendor == 0x10DE for g in replayed)
    else:
        assert done.returncode == 1 and done.stderr.startswith("NVML did not answer") and "Traceback" not in done.stderr


@pytest.mark.parametrize("flags,cap,native", [
    ("avx2 avx512f avx512_bf16", None, True),
    ("avx2 avx512f avx512_bf16", "AVX512_CORE_BF16", True),
    ("avx2 avx512f avx512_bf16", "avx512_core_amx", True),
    ("avx2 avx512f avx512_bf16", "AVX512_CORE", False),  # the CI's emulation of an older CPU
    ("avx2 avx512f avx512_bf16", "AVX2", False),
    ("avx2 avx512f amx_bf16 amx_tile", "", True),
    ("avx2 avx512f avx512_vnni", None, False),
])
def test_the_runtime_takes_bf16_matmuls_only_where_onednn_may_run_them_natively(tmp_path, flags, cap, native):
    from runtimes.cpu_isa import onednn_native_bf16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu {flags}\n")
    env = {} if cap is None else {"ONEDNN_MAX_CPU_ISA": cap}
    assert onednn_native_bf16(str(cpuinfo), env) is native
