"""Our encoder and pooling against transformers' reference, without the server."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from .conftest import TEXTS, model_zip, reference

pytestmark = [pytest.mark.slow, pytest.mark.model_output]


def _engine(embed_dir, dtype: str = "float32"):
    from tokenizers import Tokenizer

    from runtimes.fallback.embed_engine import EmbedEngine
    from runtimes.fallback.encoder import BertEncoder
    from runtimes.fallback.pooling import PoolingConfig

    tok = Tokenizer.from_file(str(embed_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return EmbedEngine(BertEncoder.load(embed_dir, dtype=dtype), PoolingConfig.from_dir(embed_dir), 4096, 4), tok


@pytest.fixture(scope="module")
def engine(embed_dir):
    return _engine(embed_dir)


@pytest.fixture(scope="module")
def bf16_engine(embed_dir):
    return _engine(embed_dir, "bfloat16")


def test_packed_batch_matches_reference_per_input(engine, ref_vectors):
    eng, tok = engine
    seqs = [e.ids for e in tok.encode_batch(TEXTS)]
    assert len({len(s) for s in seqs}) >= 5  # mixed lengths (3 to 122 tokens), or the test proves little
    ours = eng.embed_now(seqs)
    cos = (ours * ref_vectors).sum(-1)
    assert cos.min().item() >= 0.999, cos.tolist()
    # each alone gives what it gives in the batch: packing leaks nothing across sequences
    for i, s in enumerate(seqs):
        assert (eng.embed_now([s])[0] @ ours[i]).item() >= 0.99999
    # the facts ENVIRONMENT.md records for this model
    assert abs((ours[0] @ ours[1]).item() - 0.665) < 0.01 and abs((ours[0] @ ours[2]).item() - 0.103) < 0.01


def test_pooling_config_from_the_model(embed_dir):
    from runtimes.fallback.pooling import PoolingConfig

    assert PoolingConfig.from_dir(embed_dir) == PoolingConfig("mean", True)


def test_cls_pooling_and_unsupported_modes(embed_dir, tmp_path, engine):
    import json

    import torch

    from runtimes.fallback.pooling import PoolingConfig, pool

    d = tmp_path / "m"
    shutil.copytree(embed_dir, d)
    cfg = json.loads((d / "1_Pooling/config.json").read_text())
    (d / "1_Pooling/config.json").write_text(json.dumps({**cfg, "pooling_mode_mean_tokens": False,
                                                          "pooling_mode_cls_token": True}))
    assert PoolingConfig.from_dir(d) == PoolingConfig("cls", True)
    eng, tok = engine
    seqs = [e.ids for e in tok.encode_batch(TEXTS[:3])]
    hidden = eng.encoder.forward(torch.tensor([t for s in seqs for t in s]), [len(s) for s in seqs])
    starts = [0, len(seqs[0]), len(seqs[0]) + len(seqs[1])]
    want = torch.nn.functional.normalize(hidden[starts], dim=-1)
    assert torch.allclose(pool(hidden, [len(s) for s in seqs], PoolingConfig("cls", True)), want)
    (d / "1_Pooling/config.json").write_text(json.dumps({**cfg, "pooling_mode_max_tokens": True}))
    with pytest.raises(ValueError, match="pooling"):
        PoolingConfig.from_dir(d)


def test_task_is_read_from_the_model(embed_dir):
    from runtime.conftest import gguf_path
    from runtimes.fallback.task import model_task

    assert model_task(str(model_zip())) == "embed"
    assert model_task(str(embed_dir)) == "embed"
    assert model_task(str(gguf_path())) == "generate"


def test_archive_unpacks_once_and_refuses_escaping_names(tmp_path):
    from runtimes.model_archive import read_json, unpacked

    first = unpacked(model_zip(), tmp_path)
    assert (first / "config.json").is_file() and unpacked(model_zip(), tmp_path) == first
    assert read_json(model_zip(), "1_Pooling/config.json")["pooling_mode_mean_tokens"] is True
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../evil.txt", "x")
    with pytest.raises(ValueError, match="unsafe"):
        unpacked(bad, tmp_path / "c")
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("which", ["engine", "bf16_engine"])
def test_packed_batches_of_any_shape_match_reference(which, request, embed_dir, ref_vectors):
    """Both dtypes the server offers (fp32, the plan's default; bf16 matmuls, bench/embeddings.py's faster
    mode), on the packed path's edge cases: lengths 3 to 122 in one batch, widely different lengths in
    either order, a batch of one, and a batch of one length (no padding, no key mask)."""
    eng, tok = request.getfixturevalue(which)
    seqs = [e.ids for e in tok.encode_batch(TEXTS)]
    ours = eng.embed_now(seqs)
    assert (ours * ref_vectors).sum(-1).min().item() >= 0.999
    longest, shortest = seqs[5], seqs[3]
    for order in ([longest, shortest], [shortest, longest, shortest]):
        got = eng.embed_now(order)
        want = [ours[5] if s is longest else ours[3] for s in order]
        assert all((g @ w).item() >= 0.99999 for g, w in zip(got, want))
    assert (eng.embed_now([seqs[0]])[0] @ ref_vectors[0]).item() >= 0.999  # a batch of one
    same = [tok.encode(t).ids for t in ("A cat sits on the mat.", "A dog lies on the rug.", "A cow eats in the barn.")]
    assert len({len(s) for s in same}) == 1
    cos = (eng.embed_now(same) * reference(embed_dir, ["A cat sits on the mat.", "A dog lies on the rug.",
                                                       "A cow eats in the barn."])).sum(-1)
    assert cos.min().item() >= 0.999, cos.tolist()
