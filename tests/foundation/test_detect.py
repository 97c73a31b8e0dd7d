"""Hardware detection: this machine (CPU), and AMD GPUs from a KFD topology tree laid out like the driver's."""
from packager.detect import _amd_gpus, detect_hardware, match_catalog


def test_this_machine_is_described():
    hw = detect_hardware()
    pool = hw.pools[0]
    assert pool.count >= 1 and pool.memory_gib > 0
    assert pool.accelerator.key in ("cpu",) or pool.accelerator.vendor in ("nvidia", "amd")


def test_amd_topology(tmp_path):
    cpu = tmp_path / "0"
    cpu.mkdir()
    (cpu / "properties").write_text("cpu_cores_count 64\ngfx_target_version 0\n")
    for i in (1, 2):
        gpu = tmp_path / str(i)
        (gpu / "mem_banks" / "0").mkdir(parents=True)
        (gpu / "properties").write_text("simd_count 1216\ngfx_target_version 90402\n")
        (gpu / "mem_banks" / "0" / "properties").write_text(f"heap_type 1\nsize_in_bytes {192 * 2**30}\n")
    assert _amd_gpus(str(tmp_path)) == [("gfx942", 192.0), ("gfx942", 192.0)]


def test_nvml_names_map_to_catalog_rows():
    assert match_catalog("NVIDIA H100 80GB HBM3", 79.6).key == "nvidia-h100-sxm-80gb"
    assert match_catalog("NVIDIA H100 PCIe", 79.6).key == "nvidia-h100-pcie-80gb"
    assert match_catalog("NVIDIA A100-SXM4-40GB", 39.4).key == "nvidia-a100-40gb"
    assert match_catalog("NVIDIA L4", 22.5).key == "nvidia-l4"
    assert match_catalog("NVIDIA H200", 139.8).key == "nvidia-h200"
    assert match_catalog("Some Future GPU", 10) is None
