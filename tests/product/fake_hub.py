"""A Hugging Face Hub-compatible endpoint on 127.0.0.1 for `packager init ORG/NAME`: the few routes
huggingface_hub calls (model info with siblings and sha, resolve/{rev}/{file}), serving one repo from a
local directory. Real huggingface_hub talks to it over HTTP through HF_ENDPOINT; no other host is reached."""
from __future__ import annotations

import hashlib
import json
import re
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlparse
from loopback_http import LoopbackServer

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin")


class FakeHub:
    def __init__(self, repo: str, files: Path, sha: str, revisions: tuple[str, ...] = ("main",), card: dict | None = None,
                 parameters: int | None = None):
        self.repo, self.files, self.sha = repo, files, sha
        self.revisions = set(revisions) | {sha}
        self.card, self.parameters = card or {}, parameters
        self.requests: list[str] = []  # paths asked for: the test checks no weights were fetched
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.answer(self, body=False)

            def do_GET(self):
                hub.answer(self, body=True)

        self.server = LoopbackServer(Handler)
        self.url = self.server.url

    def close(self):
        self.server.close()

    def info(self) -> dict:
        siblings = []
        for p in sorted(self.files.rglob("*")):
            if p.is_file():
                rel = str(p.relative_to(self.files))
                s = {"rfilename": rel, "size": p.stat().st_size, "blobId": hashlib.sha1(p.read_bytes()).hexdigest()}
                if rel.endswith(WEIGHT_SUFFIXES):  # LFS files: the Hub reports their sha256
                    s["lfs"] = {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "size": p.stat().st_size,
                                "pointerSize": 134}
                siblings.append(s)
        out = {"_id": "0", "id": self.repo, "modelId": self.repo, "sha": self.sha, "private": False,
               "tags": [f"license:{self.card['license']}"] if "license" in self.card else [],
               "siblings": siblings, "cardData": self.card, "lastModified": "2026-01-01T00:00:00.000Z"}
        if self.parameters:
            out["safetensors"] = {"parameters": {"F32": self.parameters}, "total": self.parameters}
        return out

    def answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(path)
        m = re.fullmatch(r"/api/models/(.+?)/tree/([^/]+)", path)
        if m and m[1] == self.repo and m[2] in self.revisions:  # snapshot_download's file listing
            return self.send(h, 200, [{"type": "file", "path": x["rfilename"], "size": x["size"], "oid": x["blobId"],
                                       **({"lfs": {"oid": x["lfs"]["sha256"], "size": x["size"], "pointerSize": 134}}
                                          if "lfs" in x else {})} for x in self.info()["siblings"]], body)
        m = re.fullmatch(r"/api/models/(.+?)(?:/revision/([^/]+))?", path)
        if m:
            if m[1] != self.repo:
                return self.send(h, 404, {"error": "Repository not found"}, body, {"X-Error-Code": "RepoNotFound"})
            if m[2] and m[2] not in self.revisions:
                return self.send(h, 404, {"error": f"Invalid rev id: {m[2]}"}, body, {"X-Error-Code": "RevisionNotFound"})
            return self.send(h, 200, self.info(), body)
        m = re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path)
        if m and m[1] == self.repo and m[2] in self.revisions:
            f = self.files / m[3]
            if not f.is_file():
                return self.send(h, 404, {"error": "Entry not found"}, body, {"X-Error-Code": "EntryNotFound"})
            data = f.read_bytes()
            etag = hashlib.sha1(data).hexdigest()
            return self.send(h, 200, data, body, {"X-Repo-Commit": self.sha, "ETag": f'"{etag}"'})
        return self.send(h, 404, {"error": "Repository not found"}, body, {"X-Error-Code": "RepoNotFound"})

    @staticmethod
    def send(h, status: int, payload, body: bool, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream" if isinstance(payload, bytes) else "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if body:
            h.wfile.write(data)
