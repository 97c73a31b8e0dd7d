"""llama.cpp's own ``llama-server``, the peer a CPU user would pick, built here when missing.

The sources are the llama.cpp tree vendored in the ``llama-cpp-python`` sdist,
fetched from the package registry pip already uses (no other network); the
binary is cached under ${XDG_CACHE_HOME:-~/.cache}/packager/llama-server/<version>/.

Why not GGML_NATIVE=ON: on an Intel Xeon whose OS does not grant AMX state it
emits ``ldtilecfg`` and dies with a general protection fault. So the build is
portable-off-native: each x86 SIMD level this CPU's /proc/cpuinfo names, AMX
always off (see ../shared/ENVIRONMENT.md, "llama.cpp's own server").
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from packager.cachedir import cache_dir

VERSION = "0.3.36"
# GGML cmake option -> the /proc/cpuinfo flags that must all be present.
GGML_FLAGS = {
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_BMI2": ("bmi2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_AVX512": ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"),
    "GGML_AVX512_VBMI": ("avx512vbmi",),
    "GGML_AVX512_VNNI": ("avx512_vnni",),
    "GGML_AVX512_BF16": ("avx512_bf16",),
    "GGML_AVX_VNNI": ("avx_vnni",),
}
ALWAYS = ["-DGGML_NATIVE=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
          "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DCMAKE_BUILD_TYPE=Release"]


def cpuinfo_flags(text: str) -> set[str]:
    """The first ``flags`` line of a /proc/cpuinfo text."""
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    raise ValueError("no 'flags' line in the cpuinfo text")


def cmake_flags(flags: set[str]) -> list[str]:
    """cmake -D options for a CPU with these cpuinfo flags (ON only where every needed flag is there)."""
    return ALWAYS + [f"-D{opt}={'ON' if all(f in flags for f in need) else 'OFF'}" for opt, need in GGML_FLAGS.items()]


def _root() -> Path:
    return cache_dir("llama-server", VERSION)


def source_tree() -> Path:
    """The unpacked sdist (downloaded with this interpreter's pip, i.e. its configured registry)."""
    root = _root()
    src = root / f"llama_cpp_python-{VERSION}"
    if (src / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        return src
    root.mkdir(parents=True, exist_ok=True)
    sdist = root / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.is_file():
        # pip reads the sdist's metadata through its build backend (scikit-build-core): in an isolated
        # build env from the same registry, so a fresh machine needs nothing installed first.
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={VERSION}", "-d", str(root)], check=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(root, filter="data")
    return src


def llama_commit(src: Path) -> str:
    """The vendored llama.cpp commit: the sdist ships the submodule's git HEAD."""
    head = src / ".git" / "modules" / "vendor" / "llama.cpp" / "HEAD"
    return head.read_text().strip() if head.is_file() else "unknown"


def ensure_built(cpuinfo: str | None = None) -> tuple[Path, str, list[str]]:
    """(llama-server binary, llama.cpp commit, cmake flags); builds only when the binary is missing."""
    src = source_tree()
    flags = cmake_flags(cpuinfo_flags(cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()))
    build = _root() / "build"
    binary = build / "bin" / "llama-server"
    if not binary.is_file():
        subprocess.run(["cmake", "-S", str(src / "vendor" / "llama.cpp"), "-B", str(build), *flags], check=True)
        # Niced and two jobs: the machine is shared; a cold build takes minutes.
        subprocess.run(["nice", "-n", "10", "cmake", "--build", str(build), "--target", "llama-server", "-j2"], check=True)
    return binary, llama_commit(src), flags


if __name__ == "__main__":
    b, c, f = ensure_built()
    print(b, c, " ".join(f))
