from packager.catalog import catalog

EXPECTED = {
    "nvidia-h200", "nvidia-h100-sxm-80gb", "nvidia-h100-pcie-80gb", "nvidia-a100-sxm-80gb", "nvidia-a100-40gb",
    "nvidia-l40s", "nvidia-l4", "nvidia-a10g", "nvidia-t4", "nvidia-v100-32gb", "nvidia-rtx-4090", "amd-mi300x",
    "amd-mi250x", "cpu",
    # added with detection by PCI id (issue 10): cards that used to be mistaken for a neighbour
    "nvidia-gh200", "nvidia-l40", "amd-rx-7900xtx",
}


def test_catalog_keys_are_exactly_the_agreed_ones():
    assert set(catalog()) == EXPECTED


def test_every_row_has_a_source_and_sane_numbers():
    for key, acc in catalog().items():
        assert acc.source, key
        assert acc.runtimes, key
        assert 1 <= acc.bandwidth_gbs <= 10_000, key
        if acc.vendor == "nvidia":
            assert 7.0 <= acc.compute_capability <= 10.0, key
            assert 8 <= acc.memory_gib <= 200, key
        if acc.vendor == "amd":
            assert acc.gfx_target.startswith("gfx"), key
        # Dense figures: the fp8 rate is at most twice the bf16 rate (sparse numbers would break this).
        if acc.fp8_tflops and acc.bf16_tflops:
            assert acc.fp8_tflops <= 2.01 * acc.bf16_tflops, key


def test_bf16_capability_matches_architecture():
    for key, acc in catalog().items():
        if acc.vendor == "nvidia":
            assert (acc.bf16_tflops is not None) == (acc.compute_capability >= 8.0), key
