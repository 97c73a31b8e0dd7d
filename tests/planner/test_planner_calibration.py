"""The planner against public vLLM measurements (packager/planner/calibration.yaml), row by row.

Each figure is recomputed from the planner's own estimate code; a memory figure more than 10 % off
the measured one, or a decode figure more than 25 % off, fails its row.
"""
from __future__ import annotations

import pytest

from packager.planner.calibration import all_checks, calibration, checks
from packager.planner.rules import rules

ROWS = calibration()["rows"]


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_planner_matches_the_measurement(row):
    found = checks(row)
    assert found, f"{row['id']}: no measured figure the planner can compare"
    bad = [f"{c.metric}: measured {c.measured:g}, planner {c.planned:.2f} ({c.ratio:.3f}x, tolerance {c.tolerance:.0%})"
           for c in found if not c.ok]
    assert not bad, bad


def test_every_row_names_its_source_version_settings_and_role():
    for row in ROWS:
        assert row["source"] and row["role"], row["id"]
        assert row["role"] == "held out" or row["role"].startswith("fit ("), row["id"]
        if row.get("runtime", "vllm") == "vllm":
            assert row["vllm"], row["id"]
        if row["kind"] == "memory":
            assert {"gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens", "max_model_len"} <= set(row["settings"])
            assert row["device_memory_gib"] > 0


def test_the_table_shows_the_current_planner_figures():
    """Each row's `planner:` column is what the planner computes now (`--write` refreshes it)."""
    for row in ROWS:
        stored = row.get("planner") or {}
        for c in checks(row):
            assert c.metric in stored, f"{row['id']}: no planner figure for {c.metric}; run --write"
            assert abs(stored[c.metric] - c.planned) <= 0.01 * c.planned + 0.01, (row["id"], c.metric, stored, c.planned)


def test_both_kinds_have_rows_nothing_was_tuned_on():
    held = [r for r in ROWS if r["role"] == "held out"]
    assert {r["kind"] for r in held} == {"memory", "decode"}
    assert len(held) >= 5 and len(ROWS) >= 10


def test_the_check_can_fail(monkeypatch):
    """A wrong constant shows up: budgeting 2 GiB of non-torch memory on one GPU breaks the tight RTX 3090 rows."""
    monkeypatch.setitem(rules()["vllm"]["memory"]["non_torch_gib"], "single", 2.0)
    failing = {c.row for c in all_checks() if not c.ok}
    assert {"llama31-8b-3090-20k", "llama31-8b-3090-29k", "llama31-8b-3090-35k"} <= failing


def test_calibration_command_prints_every_row():
    """The README's `python -m packager.planner.calibration`, as a user runs it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "packager.planner.calibration"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(r["id"] in done.stdout for r in ROWS) and "OFF by" not in done.stdout
