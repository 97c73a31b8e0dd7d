"""Grammar compiles under a deadline, in a process of their own.

One JSON schema or regex can compile for longer than any client should wait (800 optional
properties: 3.1 s, growing about n^2.2; the regex ``[^"]{1,2000}``: 4.5 s), and a thread cannot be
stopped. So each new grammar is compiled first by this worker (``python -m
runtimes.fallback.grammar_worker``, started once by the server), which forks a child per compile
and kills it at the deadline: the server gets "ok", the compiler's own error, or "timeout", and
never waits past the deadline.
Only a grammar that compiled in time is compiled again in the server (same code, same time):
handing over the compiled grammar would cost more than compiling it twice (256 optional
properties, measured on a busy 2-core machine: compiled in 0.6 s, serialized in 3 s to 22 MB,
loaded back in 1 s).

The worker imports xgrammar (and so torch: 2.5 s, ~290 MB resident, ~200 MB of it its own) once;
a fork per compile costs milliseconds, and a killed child takes nothing with it. Compiles run at
``NICE`` (the worker, and the server's compile thread): on a CPU the engine keeps busy they take
what it leaves, rather than half of it (a neighbour beside two 2.6 s regex compiles, at normal
priority: 4.3x its solo time). Frames on the worker's stdin/stdout: a 4-byte big-endian length,
then JSON.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from .guided import GrammarError, Spec

_LEN = struct.Struct(">I")
NICE = 10  # CFS weight 110 against the engine's 1024: about a tenth of a core when both want it
_STARTUP_S = 120.0  # the worker's imports on a busy CPU, on top of a compile's deadline


class GrammarTimeout(GrammarError):
    pass


def lower_priority() -> None:
    """Run the calling thread at ``NICE`` (on Linux nice is per thread; children inherit it)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: compiles just compete
        pass


def _write(f: BinaryIO, obj: Any) -> None:
    data = json.dumps(obj).encode()
    f.write(_LEN.pack(len(data)) + data)
    f.flush()


def _read(fd: int, deadline: float | None = None) -> Any:
    """One frame from ``fd``; None at end of file, TimeoutError past ``deadline`` (monotonic)."""
    def exactly(n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            if deadline is not None and not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    head = exactly(_LEN.size)
    if head is None:
        return None
    body = exactly(_LEN.unpack(head)[0])
    return None if body is None else json.loads(body)


# -- the server's side ---------------------------------------------------------------
class CompileSandbox:
    """The worker process, from the server: ``check(spec)`` returns once the grammar compiled
    there within ``timeout`` seconds, else raises GrammarError (GrammarTimeout past the deadline).
    One check at a time (the server calls it from its one compile thread)."""

    def __init__(self, tokenizer_info: str, timeout: float):
        self.info = tokenizer_info
        self.timeout = timeout
        self.closed = False
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the directory that holds `runtimes`
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        self.proc = subprocess.Popen([sys.executable, "-m", "runtimes.fallback.grammar_worker"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        # The vocabulary goes first; the pipe takes 64 KiB until the worker has imported xgrammar,
        # so it is written from a thread, and no check is sent before it is.
        self._ready = threading.Event()
        threading.Thread(target=self._send_info, args=(self.proc, self._ready), name="grammar-worker-init",
                         daemon=True).start()

    def _send_info(self, proc: subprocess.Popen, ready: threading.Event) -> None:
        try:
            _write(proc.stdin, {"tokenizer_info": self.info})
        except OSError:
            pass  # the worker died: the next check finds out and starts another
        finally:
            ready.set()

    def check(self, spec: Spec) -> None:
        with self._lock:
            self._ready.wait()
            try:
                _write(self.proc.stdin, {"kind": spec.kind, "value": spec.value, "timeout": self.timeout})
                reply = _read(self.proc.stdout.fileno(), time.monotonic() + self.timeout + _STARTUP_S)
            except (OSError, TimeoutError):
                reply = None
            if reply is None:  # the worker died or hung: a fresh one for the next request
                if self.closed:
                    raise GrammarError("the server is stopping")
                self._stop()
                self._start()
                raise GrammarError("the grammar compiler's worker failed; retry")
        if reply.get("timeout"):
            raise GrammarTimeout(f"compiling the {spec.kind} constraint took over {self.timeout:g} s "
                                 "(--grammar-compile-timeout): simplify it")
        if "error" in reply:
            raise GrammarError(reply["error"])

    def close(self) -> None:
        self.closed = True
        self._stop()

    def _stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# -- the worker's side ---------------------------------------------------------------
def _compile_in_child(compiler: Any, request: dict) -> dict:
    """Compile in a forked child; kill it at the deadline."""
    from .guided import compile_spec

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compile, say how it went, leave without running the parent's exit code
        os.close(r)
        code, message = 0, b""
        try:
            compile_spec(compiler, Spec(request["kind"], request["value"]))
        except GrammarError as e:
            code, message = 3, str(e).encode()
        except BaseException as e:  # noqa: BLE001 - whatever it was, the parent reports it
            code, message = 4, f"the grammar compiler failed: {type(e).__name__}".encode()
        os.write(w, message)
        os._exit(code)
    os.close(w)
    try:
        if not select.select([r], [], [], float(request["timeout"]))[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"timeout": True}
        message = b"".join(iter(lambda: os.read(r, 65536), b""))
    finally:
        os.close(r)
    status = os.waitpid(pid, 0)[1]
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return {"ok": True}
    if os.WIFSIGNALED(status):
        return {"error": f"the grammar compiler crashed (signal {os.WTERMSIG(status)})"}
    return {"error": message.decode(errors="replace") or "the grammar compiler failed"}


def main() -> int:
    # The frames own the real stdin and stdout; anything printed goes to stderr instead.
    inp, out = os.dup(0), os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    os.close(0)
    lower_priority()
    import xgrammar as xgr

    first = _read(inp)
    if first is None:
        return 0
    info = xgr.TokenizerInfo.deserialize_json(first["tokenizer_info"])
    compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    while (request := _read(inp)) is not None:
        _write(out, _compile_in_child(compiler, request))
    return 0


if __name__ == "__main__":
    sys.exit(main())
