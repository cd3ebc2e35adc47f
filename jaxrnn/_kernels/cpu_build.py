"""Compiling the CPU kernel's C++ (``csrc/rnn_cpu.cc``) on first use, into a per-user cache.

The source ships in the package. The first call that needs the kernel compiles
it with the machine's C++ compiler against the installed jaxlib's FFI headers
(:func:`jax.ffi.include_dir`), for this CPU (``-march=native``), into

    $JAXRNN_CACHE_DIR (default: $XDG_CACHE_HOME/jaxrnn or ~/.cache/jaxrnn)/cpu-kernel/rnn_cpu-<key>.so

where ``<key>`` hashes the source, the jaxlib version, the compiler's version,
the flags and the CPU's feature flags, so a new jaxlib, compiler or machine gets
its own build and an unchanged one compiles nothing. A file lock makes concurrent
processes (the test workers) compile once; the library is written under a
temporary name and renamed into place, so a reader never sees half a file.

Without a compiler, or when the build fails, :func:`load` returns the reason;
the kernel module then tells the user, once, how to get the kernel (a C++17
compiler on the PATH or in ``$CXX``), and the XLA path runs. Importing jaxrnn
never compiles anything.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import NamedTuple

SOURCE = pathlib.Path(__file__).parent / "csrc" / "rnn_cpu.cc"
# The handlers the library exports (XLA_FFI_DEFINE_HANDLER_SYMBOL) -> the FFI target names.
TARGETS = {
    "JaxrnnCpuForward": "jaxrnn_cpu_forward",
    "JaxrnnCpuBackward": "jaxrnn_cpu_backward",
    "JaxrnnCpuActivations": "jaxrnn_cpu_activations",
}
FLAGS = ("-O3", "-std=c++17", "-ffp-contract=fast", "-fPIC", "-shared")
NATIVE = ("-march=native",)
HOW_TO_GET_IT = (
    "install a C++17 compiler (g++ or clang++ on the PATH, or set $CXX to one) and restart Python; "
    "the kernel then compiles once, on first use, into the per-user cache"
)


class BuildError(RuntimeError):
    """The kernel could not be compiled or loaded; the message says why."""


class Build(NamedTuple):
    """A compiled library: where it is and whether this call compiled it."""

    path: pathlib.Path
    compiled: bool


def cache_dir() -> pathlib.Path:
    """Where compiled kernels are kept (``$JAXRNN_CACHE_DIR``, else the user's cache folder)."""
    root = os.environ.get("JAXRNN_CACHE_DIR")
    if root:
        return pathlib.Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "jaxrnn"


def find_compiler() -> str | None:
    """``$CXX`` when set (even if it does not exist: the build then says so), else the first C++ compiler on the PATH."""
    cxx = os.environ.get("CXX")
    if cxx:
        return cxx
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _cpu_features() -> str:
    """The CPU's feature flags (Linux), or the best description the platform gives."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _run(cmd: list, what: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"{what}: {' '.join(cmd[:1])} could not run ({e})") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise BuildError(f"{what} failed (exit status {done.returncode}): {tail}")
    return done.stdout + done.stderr


def _key(compiler: str, include: str, flags: tuple) -> str:
    import jaxlib

    version = _run([compiler, "--version"], f"asking the C++ compiler {compiler!r} its version")
    parts = (SOURCE.read_bytes(), jaxlib.__version__, version, " ".join(flags), include, _cpu_features())
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:20]


class _FileLock:
    """An exclusive lock on a file, across processes and threads (``fcntl.flock``; POSIX)."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def build(directory: pathlib.Path | None = None, compiler: str | None = None) -> Build:
    """The compiled library in ``directory`` (default :func:`cache_dir`), compiled now if absent.

    Raises:
      BuildError: no compiler, no FFI headers, or the compiler failed (the message
        has the end of its output).
    """
    if sys.platform == "win32":
        raise BuildError("the CPU kernel builds on Linux and macOS only (it needs fcntl and a GNU-style C++ compiler)")
    compiler = compiler or find_compiler()
    if compiler is None:
        raise BuildError("no C++ compiler found (none of $CXX, c++, g++, clang++)")
    import jax

    include = jax.ffi.include_dir()
    if not (pathlib.Path(include) / "xla" / "ffi" / "api" / "ffi.h").exists():
        raise BuildError(f"this jaxlib has no FFI headers under {include}")
    flags = FLAGS + NATIVE if platform.machine() in ("x86_64", "AMD64") else FLAGS
    directory = pathlib.Path(directory or cache_dir()) / "cpu-kernel"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"rnn_cpu-{_key(compiler, include, flags)}.so"
    if target.exists():
        return Build(target, False)
    with _FileLock(directory / (target.name + ".lock")):
        if target.exists():  # another process compiled it while this one waited
            return Build(target, False)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=target.name + ".", suffix=".tmp")
        os.close(fd)
        try:
            _run([compiler, *flags, "-isystem", include, str(SOURCE), "-o", tmp], "compiling the jaxrnn CPU kernel")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return Build(target, True)


_lock = threading.Lock()
_state: dict = {}  # "library" -> the loaded ctypes library, or "error" -> why it could not be built


def load():
    """The kernel's library, built and its FFI targets registered on the first call; raises BuildError.

    The outcome (library or error) is kept for the process: one build attempt per process.
    """
    with _lock:
        if "library" in _state:
            return _state["library"]
        if "error" in _state:
            raise BuildError(_state["error"])
        try:
            import jax

            library = ctypes.cdll.LoadLibrary(str(build().path))
            for symbol, name in TARGETS.items():
                jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
        except (BuildError, OSError, AttributeError) as e:
            _state["error"] = str(e)
            raise BuildError(str(e)) from e
        _state["library"] = library
        return library


def failure() -> str | None:
    """Why this process's build failed, without building anything (None: it has not failed, or not run)."""
    return _state.get("error")


def problem() -> str | None:
    """Why the kernel cannot run in this process (None when it can); builds it on the first call."""
    try:
        load()
    except BuildError as e:
        return str(e)
    return None
