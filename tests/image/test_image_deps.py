"""What the CPU image's venv holds: xgrammar without the ~1 GB triton it declares but never uses on a CPU."""
from __future__ import annotations

import subprocess

import pytest

from packager.families import FAMILIES
from packager.image.wheelhouse import split_no_deps


def test_no_deps_packages_leave_the_resolved_set_with_the_dependencies_they_need():
    main, bare = split_no_deps(("torch==2.13.0", "xgrammar>=0.2,<0.3", "numpy"), FAMILIES["cpu"])
    assert main == ("torch==2.13.0", "numpy")
    assert bare[0] == "xgrammar>=0.2,<0.3" and any(r.startswith("apache-tvm-ffi") for r in bare)
    assert split_no_deps(("numpy",), FAMILIES["cpu"]) == (("numpy",), ())  # nothing extra without them
    assert split_no_deps(("xgrammar",), FAMILIES["vllm"]) == (("xgrammar",), ())  # other families: as declared


@pytest.mark.docker
@pytest.mark.slow
def test_the_cpu_image_compiles_grammars_without_triton(built_image):
    code = ("import importlib.util, json, xgrammar; from transformers import AutoTokenizer; "
            "import glob; tok = AutoTokenizer.from_pretrained(glob.glob('/opt/packager/model/*.tokenizer')[0]); "
            "c = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tok)); "
            "c.compile_json_schema(json.dumps({'type': 'object'})); "
            "print(importlib.util.find_spec('triton') is None)")
    r = subprocess.run([built_image["cli"], "run", "--rm", "--network", "none", "--entrypoint",
                        "/opt/packager/venv/bin/python", built_image["tag"], "-c", code],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "True"
