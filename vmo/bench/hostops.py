"""The host contender's helper: vmo/bench/_hostops.c compiled with gcc at run time, cached by
source hash, loaded with ctypes (`host_ops()`), or the reason it cannot be."""

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import BenchError, Unavailable, fmt_size

_HOST_FUNCS = {
    # name: (restype, argtypes)
    "abi": (ctypes.c_int64, ()),
    "map": (ctypes.c_void_p, (ctypes.c_uint64,)),
    "unmap": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64)),
    "probe_populate": (ctypes.c_int64, ()),
    "populate": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64)),
    "dontneed": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64)),
    "dontneed_populate": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64)),
    "prefault": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64)),
    "touch": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int)),
    "fill": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int)),
    "open_pagemap": (ctypes.c_int64, ()),
    "close": (ctypes.c_int64, (ctypes.c_int64,)),
    "pagemap": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_void_p, ctypes.c_uint64,
                                 ctypes.c_void_p)),
    "pagemap_loop": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64)),
    "populate_loop": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_int64)),
    "memfd": (ctypes.c_int64, (ctypes.c_uint64, ctypes.c_int)),
    "pread_loop": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_void_p, ctypes.c_uint64,
                                    ctypes.c_uint64, ctypes.c_int64)),
    "pwrite_loop": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_void_p, ctypes.c_uint64,
                                     ctypes.c_uint64, ctypes.c_int64)),
    "memfd_cycle": (ctypes.c_int64, (ctypes.c_int64,)),
    "cow_loop": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_int64)),
    "fstat_loop": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_int64)),
}
_HOST_SOURCE = Path(__file__).with_name("_hostops.c")
_HOST_CFLAGS = ["-O2", "-shared", "-fPIC", "-std=gnu11"]


class HostOps:
    """The compiled host helper (or why there is none). Methods raise BenchError on a host
    errno; `require()` raises Unavailable when the helper could not be built."""

    def __init__(self, lib=None, reason=None, path=None, compiler=None):
        self.lib = lib
        self.reason = reason
        self.path = path
        self.compiler = compiler
        self.populate_reason = None
        if lib is not None:
            err = lib.vh_probe_populate()
            if err < 0:
                self.populate_reason = ("MADV_POPULATE_WRITE unavailable here "
                                        f"({os.strerror(-err)}; it needs Linux >= 5.14)")

    @property
    def available(self):
        return self.lib is not None

    def require(self, populate=False):
        if self.lib is None:
            raise Unavailable(self.reason)
        if populate and self.populate_reason:
            raise Unavailable(self.populate_reason)

    def call(self, name, *args):
        result = getattr(self.lib, "vh_" + name)(*args)
        if result < 0:
            raise BenchError(f"host {name}: {os.strerror(-result)}")
        return result

    def map(self, size):
        p = self.lib.vh_map(size)
        if not p:
            raise BenchError(f"host mmap of {fmt_size(size)} failed")
        return p

    def as_dict(self):
        return {"available": self.available, "reason": self.reason, "library": self.path,
                "compiler": self.compiler, "populate_write": self.available
                and self.populate_reason is None, "populate_reason": self.populate_reason}


_HOST = None


def _cache_dir():
    base = os.environ.get("VMO_BENCH_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "vmo-bench"


def _build_host():
    if not sys.platform.startswith("linux"):
        return HostOps(reason="the host contender needs Linux")
    if not _HOST_SOURCE.is_file():
        return HostOps(reason="vmo/bench/_hostops.c is not installed")
    cc = shutil.which("gcc")
    if cc is None:
        return HostOps(reason="gcc not found (the host helper is compiled at run time)")
    source = _HOST_SOURCE.read_bytes()
    tag = hashlib.sha256(source + " ".join([cc, platform.machine()] + _HOST_CFLAGS).encode())
    name = f"hostops-{tag.hexdigest()[:16]}.so"
    so = None
    for directory in (_cache_dir(), None):
        try:
            if directory is None:
                directory = Path(tempfile.mkdtemp(prefix="vmo-bench-"))
            candidate = directory / name
            if not candidate.is_file():
                directory.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(prefix="vmo-bench-build-") as tmp:
                    out = Path(tmp) / name
                    proc = subprocess.run([cc, *_HOST_CFLAGS, "-o", str(out), str(_HOST_SOURCE)],
                                          capture_output=True, text=True, check=False)
                    if proc.returncode:
                        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                        return HostOps(reason=f"gcc failed on vmo/bench/_hostops.c: {last}")
                    partial = directory / f"{name}.{os.getpid()}.tmp"
                    shutil.copyfile(out, partial)
                    os.replace(partial, candidate)
            so = candidate
            break
        except OSError:
            continue
    if so is None:
        return HostOps(reason="no writable directory for the host helper")
    try:
        lib = ctypes.CDLL(str(so))
        for fname, (restype, argtypes) in _HOST_FUNCS.items():
            fn = getattr(lib, "vh_" + fname)
            fn.restype = restype
            fn.argtypes = argtypes
    except (OSError, AttributeError) as exc:
        return HostOps(reason=f"cannot load the host helper: {exc}")
    version = subprocess.run([cc, "-dumpfullversion", "-dumpversion"], capture_output=True,
                             text=True, check=False).stdout.strip()
    return HostOps(lib, path=str(so), compiler=f"gcc {version}")


def host_ops():
    """The host helper, built (or loaded from the cache) on first use."""
    global _HOST
    if _HOST is None:
        _HOST = _build_host()
    return _HOST
