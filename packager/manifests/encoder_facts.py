"""Completing an embedding model's manifest: which task its files say, its pooling and sequence cap
(sentence-transformers' configs, read by runtimes/st_config.py, the same module the runtime reads them
with), and its parameter count when the manifest omits it."""
from __future__ import annotations

from packager.errors import UserError
from packager.manifests.model_schema import ModelManifest
from packager.yamlsource import YamlDoc
from runtimes import st_config


def task_of(manifest: ModelManifest, doc: YamlDoc, local: str | None) -> str:
    """The manifest's `task`, checked against the files when they are here; omitted: what the files say."""
    files_say = None
    if local and manifest.source.format != "gguf":
        files_say = "embed" if st_config.is_encoder(st_config.reader(local)) else "generate"
    task = manifest.task or files_say or "generate"
    if files_say and task != files_say:
        what = "an encoder (BERT): a model that embeds" if files_say == "embed" else "not an encoder this project embeds with"
        raise UserError(f"task is {task!r} but the model files are {what}", file=doc.file,
                        line=doc.line_of(("task",)), field="task", hint=f"write `task: {files_say}` or leave it out")
    if task == "embed" and manifest.source.format == "gguf":
        raise UserError("an embedding model is served from safetensors, not GGUF", file=doc.file,
                        line=doc.line_of(("source", "format")), field="source.format",
                        hint="point source at the sentence-transformers directory (or its zip)")
    if task == "generate" and manifest.pooling is not None:
        raise UserError("`pooling` is for embedding models", file=doc.file, line=doc.line_of(("pooling",)),
                        field="pooling", hint="remove it, or write `task: embed`")
    return task


def pooling_of(manifest: ModelManifest, doc: YamlDoc, local: str | None) -> tuple[str, bool]:
    """(mode, normalize): the manifest's words win, then the files, then mean and normalised."""
    mode, normalize = "mean", True
    if local:
        try:
            mode, normalize = st_config.pooling(st_config.reader(local))
        except ValueError as exc:
            raise UserError(f"the model's pooling: {exc}", file=local, hint="write `pooling.mode` in "
                            f"{doc.file} if the model also works with mean, cls or last") from None
    given = manifest.pooling
    return ((given.mode if given and given.mode else mode),
            (given.normalize if given and given.normalize is not None else normalize))


def max_seq_length(local: str | None) -> int | None:
    return st_config.max_seq_length(st_config.reader(local)) if local else None


def bert_parameters(a: dict, type_vocab: int = 2) -> int:
    """BERT: word, position and type embeddings (+ LayerNorm), then per layer q/k/v/o with biases, two
    LayerNorms and the MLP (up, down; not gated); and the pooler's dense layer, which checkpoints carry
    (all-MiniLM-L6-v2: 22,713,216, its safetensors' count exactly)."""
    h, i, L = a["hidden_size"], a["intermediate_size"], a["layers"]
    embed = (a["vocab_size"] + a["max_position_embeddings"] + type_vocab) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h
    return embed + L * layer + h * h + h
