"""OMP_WAIT_POLICY for an embedding server: passive unless the user chose, decided from the model's
files before torch is imported (runtimes/fallback/threads.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runtimes.fallback.threads import prefer_passive_wait

from .conftest import model_zip

ROOT = Path(__file__).resolve().parents[2]


def test_embedding_model_waits_passively(embed_dir):
    for model in (str(model_zip()), str(embed_dir)):
        env: dict[str, str] = {}
        assert prefer_passive_wait(["--model", model, "--port", "8000"], env) is True
        assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {}
    assert prefer_passive_wait([f"--model={embed_dir}"], env) and env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_user_choice_llm_and_unreadable_models_are_left_alone(tmp_path):
    from runtime.conftest import gguf_path

    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert prefer_passive_wait(["--model", str(model_zip())], env) is False and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    (tmp_path / "bad.zip").write_text("not a zip")
    for argv in (["--model", str(gguf_path())], ["--model", str(tmp_path / "missing")],
                 ["--model", str(tmp_path / "bad.zip")], ["--port", "1"], []):
        env = {}
        assert prefer_passive_wait(argv, env) is False and env == {}, argv


def test_decided_before_torch_loads():
    """libgomp reads the variable once, when torch loads it: the entry point must not import torch first."""
    code = ("import sys, os; from runtimes.fallback.threads import prefer_passive_wait; "
            f"prefer_passive_wait(['--model', {str(model_zip())!r}]); "
            "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.stdout.split() == ["False", "PASSIVE"], r.stderr[-2000:]
    main = (ROOT / "runtimes/fallback/__main__.py").read_text()
    assert main.index("prefer_passive_wait(") < main.index("from .server import")
