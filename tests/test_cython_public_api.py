"""The public Cython API: an extension that cimports only `vmo.api` drives every syscall.

``from vmo.api cimport Kernel, NO_ERROR, ...`` gives the Kernel type with a C-level twin
(`c_*`) of every syscall, and the status, op and rights constants. This test builds (as
tests/test_cython_api.py does, with the same helper and skip conditions) an extension that
cimports nothing of vmo but `vmo.api`, then runs the same script of calls through the C
twins on one kernel and through the Python syscalls on another: every status, handle value,
koid, size and byte must agree. It also mixes both on one kernel.
"""

import importlib.util
import os
import sys
import tempfile
import textwrap

import pytest
from test_cython_api import _skip_reason

import vmo
from vmo import Op, Status

PAGE = 4096
S = Status

PYX = textwrap.dedent(r'''
    # cython: language_level=3, boundscheck=False, wraparound=False
    from libc.stdint cimport uint32_t, uint64_t
    from libc.string cimport memset

    from vmo.api cimport *

    def constants():
        return {"NO_ERROR": NO_ERROR, "ERR_NO_MEMORY": ERR_NO_MEMORY,
                "ERR_BAD_HANDLE": ERR_BAD_HANDLE, "ERR_CANCELED": ERR_CANCELED,
                "MX_VMO_OP_LOOKUP": MX_VMO_OP_LOOKUP, "MX_RIGHT_READ": MX_RIGHT_READ,
                "MX_RIGHT_SAME_RIGHTS": MX_RIGHT_SAME_RIGHTS, "PAGE_SIZE": PAGE_SIZE,
                "MX_VMO_MAX_SIZE": MX_VMO_MAX_SIZE, "MX_MAX_HANDLES": MX_MAX_HANDLES,
                "MX_INFO_HANDLE_BASIC": MX_INFO_HANDLE_BASIC,
                "MX_VMO_CLONE_COPY_ON_WRITE": MX_VMO_CLONE_COPY_ON_WRITE}

    def vmo_create(Kernel k, uint64_t size, uint32_t options=0):
        cdef uint32_t out = 12345
        cdef int st = k.c_create(size, options, &out)
        return st, out

    def vmo_create_contiguous(Kernel k, uint64_t size, uint32_t alignment_log2=0):
        cdef uint32_t out = 12345
        cdef int st = k.c_create_contiguous(size, alignment_log2, &out)
        return st, out

    def vmo_get_size(Kernel k, uint32_t handle):
        cdef uint64_t size = 0
        cdef int st = k.c_get_size(handle, &size)
        return st, size

    def vmo_set_size(Kernel k, uint32_t handle, uint64_t size):
        return k.c_set_size(handle, size)

    def vmo_read_bytes(Kernel k, uint32_t handle, uint64_t offset, uint64_t length):
        cdef char data[8192]
        cdef uint64_t actual = 777
        cdef int st
        memset(data, 0, 8192)
        st = k.c_read(handle, data, offset, length, &actual)
        return st, data[:actual] if st == NO_ERROR else b""

    def vmo_write(Kernel k, uint32_t handle, bytes payload, uint64_t offset):
        cdef uint64_t actual = 777
        cdef int st = k.c_write(handle, <const char *>payload, offset, len(payload), &actual)
        return st, actual

    def vmo_op_range(Kernel k, uint32_t handle, uint32_t op, uint64_t offset, uint64_t size):
        return k.c_op_range(handle, op, offset, size, NULL, 0)

    def lookup(Kernel k, uint32_t handle, uint64_t offset, uint64_t size, uint64_t n):
        cdef uint64_t buf[64]
        cdef int st = k.c_lookup(handle, offset, size, buf, n)
        return st, [buf[i] for i in range(n)] if st == NO_ERROR else []

    def commit(Kernel k, uint32_t handle, uint64_t offset, uint64_t size):
        return k.c_commit(handle, offset, size)

    def decommit(Kernel k, uint32_t handle, uint64_t offset, uint64_t size):
        return k.c_decommit(handle, offset, size)

    def vmo_clone(Kernel k, uint32_t handle, uint32_t options, uint64_t offset,
                  uint64_t size):
        cdef uint32_t out = 12345
        cdef int st = k.c_clone(handle, options, offset, size, &out)
        return st, out

    def vmo_committed_bytes(Kernel k, uint32_t handle):
        cdef uint64_t out = 12345
        cdef int st = k.c_committed_bytes(handle, &out)
        return st, out

    def handle_close(Kernel k, uint32_t handle):
        return k.c_handle_close(handle)

    def handle_duplicate(Kernel k, uint32_t handle, uint32_t rights):
        cdef uint32_t out = 12345
        cdef int st = k.c_handle_duplicate(handle, rights, &out)
        return st, out

    def handle_replace(Kernel k, uint32_t handle, uint32_t rights):
        cdef uint32_t out = 12345
        cdef int st = k.c_handle_replace(handle, rights, &out)
        return st, out

    def object_get_info(Kernel k, uint32_t handle, uint32_t topic):
        cdef handle_basic_info info
        cdef int st = k.c_get_info(handle, topic, &info)
        if st != NO_ERROR:
            return st, 0
        if topic != MX_INFO_HANDLE_BASIC:
            return st, None
        return st, (info.koid, info.rights, info.type, info.related_koid, info.props)

    def event_create(Kernel k, uint32_t options=0):
        cdef uint32_t out = 12345
        cdef int st = k.c_event_create(options, &out)
        return st, out

    def phys_read(Kernel k, uint64_t paddr, uint64_t length):
        cdef char data[8192]
        cdef int st = k.c_phys_read(paddr, data, length)
        return st, data[:length] if st == NO_ERROR else b""

    def phys_write(Kernel k, uint64_t paddr, bytes payload):
        return k.c_phys_write(paddr, <const char *>payload, len(payload))

    # -- machine services: pins, host addresses, physical runs, change notifications
    def pin(Kernel k, uint64_t paddr, uint64_t length):
        cdef void *host = <void *>1
        cdef int st = k.c_pin(paddr, length, &host)
        return st, <size_t>host

    def unpin(Kernel k, uint64_t paddr, uint64_t length):
        return k.c_unpin(paddr, length)

    def host_address(Kernel k, uint64_t paddr, uint64_t length):
        cdef void *host = <void *>1
        cdef int st = k.c_host_address(paddr, length, &host)
        return st, <size_t>host

    def host_bytes(size_t address, size_t length):
        return (<const char *>address)[:length]

    def lookup_runs(Kernel k, uint32_t handle, uint64_t offset, uint64_t size,
                    uint64_t max_runs):
        cdef vmo_run runs[16]
        cdef uint64_t count = 12345
        cdef int st = k.c_lookup_runs(handle, offset, size, runs, max_runs, &count)
        return st, count, [(runs[i].offset, runs[i].paddr, runs[i].length, bool(runs[i].own))
                           for i in range(min(count, max_runs))]

    cdef uint64_t seen[64]
    cdef uint64_t nseen = 0

    cdef void on_change_fn(void *ctx, uint64_t offset, uint64_t length) noexcept:
        global nseen
        if nseen < 32:
            seen[2 * nseen] = offset
            seen[2 * nseen + 1] = length
            nseen += 1
        (<uint64_t *>ctx)[0] += 1

    cdef uint64_t calls = 0

    def on_change(Kernel k, uint32_t handle):
        cdef uint64_t sub = 12345
        cdef int st = k.c_on_change(handle, on_change_fn, &calls, &sub)
        return st, sub

    def cancel_change(Kernel k, uint64_t sub):
        return k.c_cancel_change(sub)

    def changes():
        global nseen, calls
        got = [(seen[2 * i], seen[2 * i + 1]) for i in range(nseen)]
        assert calls == nseen
        nseen = calls = 0
        return got
    def dirty_log(Kernel k, uint64_t max_entries, bint clear):
        cdef uint64_t buf[64]
        cdef uint64_t count = 777
        cdef int st = k.c_dirty_log(buf, max_entries, clear, &count)
        return st, count, [buf[i] for i in range(count)] if st == NO_ERROR else []
''')


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """Build and import the extension that cimports only vmo.api (once per module)."""
    build = tmp_path_factory.mktemp("cimport_vmo_api")
    reason = _skip_reason(build)
    if reason:
        pytest.skip(reason)
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    (build / "vmo_api_client.pyx").write_text(PYX)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(vmo.__file__)))
    package_dir = os.path.dirname(os.path.abspath(vmo.__file__))
    old_cwd = os.getcwd()
    os.chdir(build)
    try:
        extension = Extension("vmo_api_client", ["vmo_api_client.pyx"],
                              include_dirs=[package_dir, package_parent],
                              extra_compile_args=["-O1"])
        modules = cythonize([extension], include_path=[package_parent], quiet=True,
                            compiler_directives={"language_level": 3})
        dist = Distribution({"name": "vmo_api_client", "ext_modules": modules})
        dist.script_args = ["build_ext", "--inplace", "--build-temp", str(build / "tmp")]
        dist.parse_command_line()
        dist.run_commands()
    finally:
        os.chdir(old_cwd)
    built = [p for p in build.iterdir() if p.name.startswith("vmo_api_client") and
             p.suffix in (".so", ".pyd")]
    assert built, "no extension module was built in %s" % build
    spec = importlib.util.spec_from_file_location("vmo_api_client", built[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["vmo_api_client"] = module
    return module


class PythonSide:
    """The Python syscalls, shaped like the extension's functions (statuses as ints)."""

    def __init__(self, k):
        self.k = k

    def __getattr__(self, name):
        call = getattr(self.k, name)

        def plain(*args):
            result = call(*args)
            if isinstance(result, tuple):
                status, value = result
                if isinstance(value, tuple):
                    value = tuple(value)
                return (int(status), value)
            return int(result)
        return plain

    def lookup(self, handle, offset, size, n):
        from array import array
        buf = array("Q", [0] * n)
        st = self.k.vmo_op_range(handle, Op.LOOKUP, offset, size, buf)
        return int(st), list(buf) if st == 0 else []

    def commit(self, handle, offset, size):
        return int(self.k.vmo_op_range(handle, Op.COMMIT, offset, size))

    def decommit(self, handle, offset, size):
        return int(self.k.vmo_op_range(handle, Op.DECOMMIT, offset, size))

    def phys_read(self, paddr, length):
        try:
            return 0, self.k.phys_read(paddr, length)
        except vmo.MxError as exc:
            return int(exc.status), b""

    def phys_write(self, paddr, payload):
        try:
            self.k.phys_write(paddr, payload)
            return 0
        except vmo.MxError as exc:
            return int(exc.status)


class CSide:
    def __init__(self, api, k):
        self.api = api
        self.k = k

    def __getattr__(self, name):
        fn = getattr(self.api, name)
        return lambda *args: fn(self.k, *args)


def script(s, base):
    """A run of every syscall, successes and failures; returns what each call gave."""
    out = []
    rec = out.append
    rec(s.vmo_create(3 * PAGE + 10))
    rec(s.vmo_create(PAGE, 1))
    rec(s.vmo_create((1 << 64) - 1))
    h = 1
    rec(s.vmo_get_size(h))
    rec(s.vmo_get_size(2))
    rec(s.vmo_write(h, b"hello, world" * 10, PAGE - 7))
    rec(s.vmo_write(h, b"x", 3 * PAGE + 11))
    rec(s.vmo_read_bytes(h, PAGE - 10, 130))
    rec(s.vmo_read_bytes(h, 3 * PAGE + 11, 1))
    rec(s.vmo_committed_bytes(h))
    rec(s.commit(h, 0, 3 * PAGE))
    rec(s.commit(h, 5 * PAGE, 1))
    rec(s.lookup(h, 0, 3 * PAGE, 3))
    rec(s.lookup(h, 0, 3 * PAGE, 2))
    rec(s.lookup(h, 0, 0, 2))
    rec(s.decommit(h, PAGE, 1))
    rec(s.lookup(h, 0, 3 * PAGE, 3))
    rec(s.vmo_op_range(h, Op.LOCK, 0, PAGE))
    rec(s.vmo_op_range(h, Op.CACHE_CLEAN, 0, PAGE))
    rec(s.vmo_op_range(h, Op.CACHE_CLEAN, 0, 0))
    rec(s.vmo_op_range(h, 99, 0, PAGE))
    rec(s.vmo_clone(h, 1, 0, 2 * PAGE))
    rec(s.vmo_clone(h, 0, 0, 2 * PAGE))
    rec(s.vmo_clone(h, 1, 1, 2 * PAGE))
    rec(s.vmo_clone(h, 1, PAGE, (1 << 64) - PAGE))
    clone = out[-4][1]
    rec(s.vmo_write(clone, b"cow", 5))
    rec(s.vmo_read_bytes(clone, 0, 16))
    rec(s.vmo_read_bytes(h, 0, 16))
    rec(s.vmo_committed_bytes(clone))
    rec(s.vmo_set_size(clone, 10 * PAGE))
    rec(s.vmo_set_size(clone, (1 << 64) - 1))
    rec(s.vmo_get_size(clone))
    rec(s.handle_duplicate(h, vmo.MX_RIGHT_READ))
    ro = out[-1][1]
    rec(s.handle_duplicate(h, 1 << 20))
    rec(s.handle_duplicate(ro, Op.COMMIT))
    rec(s.vmo_write(ro, b"no", 0))
    rec(s.vmo_set_size(ro, PAGE))
    rec(s.vmo_clone(ro, 1, 0, PAGE))
    rec(s.handle_duplicate(h, vmo.MX_RIGHT_SAME_RIGHTS))
    rec(s.handle_replace(out[-1][1], vmo.MX_RIGHT_READ | vmo.MX_RIGHT_DUPLICATE))
    rec(s.handle_replace(out[-1][1], vmo.MX_RIGHT_WRITE))
    rec(s.handle_replace(12345, vmo.MX_RIGHT_SAME_RIGHTS))
    rec(s.event_create())
    ev = out[-1][1]
    rec(s.event_create(7))
    rec(s.vmo_get_size(ev))
    rec(s.vmo_read_bytes(ev, 0, 1))
    for topic in (0, 1, 2, 3, 13, 14):
        rec(s.object_get_info(h, topic))
        rec(s.object_get_info(ev, topic))
        rec(s.object_get_info(2, topic))
    rec(s.vmo_create_contiguous(2 * PAGE + 1))
    rec(s.vmo_create_contiguous(PAGE, 13))
    rec(s.vmo_create_contiguous(PAGE, 11))
    rec(s.vmo_create_contiguous(0))
    rec(s.vmo_create_contiguous(1 << 40))
    contiguous = out[-5][1]
    rec(s.lookup(contiguous, 0, 3 * PAGE, 3))
    paddr = out[-1][1][0]
    rec(s.phys_write(paddr + PAGE - 2, b"seam"))
    rec(s.phys_read(paddr + PAGE - 3, 6))
    rec(s.vmo_read_bytes(contiguous, PAGE - 3, 6))
    rec(s.phys_read(base - 1, 1))
    rec(s.phys_write(base + 60 * PAGE, b"z"))
    rec(s.handle_close(h))
    rec(s.handle_close(h))
    rec(s.vmo_read_bytes(clone, 0, 16))
    rec(s.handle_close(ev))
    rec(s.handle_close(0))
    rec(s.vmo_create(PAGE))
    return out


def test_constants_come_through_vmo_api(api):
    c = api.constants()
    assert c["NO_ERROR"] == Status.NO_ERROR and c["ERR_NO_MEMORY"] == Status.ERR_NO_MEMORY
    assert c["ERR_BAD_HANDLE"] == Status.ERR_BAD_HANDLE
    assert c["ERR_CANCELED"] == Status.ERR_CANCELED
    assert c["MX_VMO_OP_LOOKUP"] == Op.LOOKUP and c["MX_RIGHT_READ"] == vmo.MX_RIGHT_READ
    assert c["MX_RIGHT_SAME_RIGHTS"] == vmo.MX_RIGHT_SAME_RIGHTS
    assert c["PAGE_SIZE"] == vmo.PAGE_SIZE and c["MX_VMO_MAX_SIZE"] == vmo.MX_VMO_MAX_SIZE
    assert c["MX_MAX_HANDLES"] == vmo.MX_MAX_HANDLES
    assert c["MX_INFO_HANDLE_BASIC"] == vmo.MX_INFO_HANDLE_BASIC
    assert c["MX_VMO_CLONE_COPY_ON_WRITE"] == vmo.MX_VMO_CLONE_COPY_ON_WRITE


def test_the_extension_imports_no_vmo_api_module(api):
    assert "vmo.api" not in sys.modules


def test_every_syscall_through_its_c_twin_matches_python(api):
    k_c = vmo.Kernel(memory_size=64 * PAGE)
    k_py = vmo.Kernel(memory_size=64 * PAGE)
    try:
        got_c = script(CSide(api, k_c), k_c.memory_base)
        got_py = script(PythonSide(k_py), k_py.memory_base)
        for i, (c, p) in enumerate(zip(got_c, got_py)):
            assert c == p, "call %d: C %r != Python %r" % (i, c, p)
        assert len(got_c) == len(got_py)
        statuses = {r if isinstance(r, int) else r[0] for r in got_c}
        assert {0, S.ERR_BAD_HANDLE, S.ERR_INVALID_ARGS, S.ERR_NO_MEMORY, S.ERR_OUT_OF_RANGE,
                S.ERR_ACCESS_DENIED, S.ERR_WRONG_TYPE, S.ERR_NOT_SUPPORTED,
                S.ERR_BUFFER_TOO_SMALL, S.ERR_BAD_STATE} <= statuses
        assert k_c.stats() == k_py.stats()
        assert k_c._allocator_state() == k_py._allocator_state()
        k_c._check()
        k_py._check()
    finally:
        k_c.close()
        k_py.close()


def test_c_and_python_calls_mix_on_one_kernel(api):
    k = vmo.Kernel(memory_size=16 * PAGE)
    try:
        st, h = api.vmo_create(k, 2 * PAGE)
        assert (st, h) == (0, 1)
        assert k.vmo_write(h, b"from python", 100) == (S.NO_ERROR, 11)
        assert api.vmo_read_bytes(k, h, 100, 11) == (0, b"from python")
        st, c = api.vmo_clone(k, h, 1, 0, PAGE)
        assert st == 0 and k.vmo_read_bytes(c, 100, 11) == (S.NO_ERROR, b"from python")
        assert k.handle_close(h) is S.NO_ERROR
        assert api.handle_close(k, h) == S.ERR_BAD_HANDLE
        koid = api.object_get_info(k, c, vmo.MX_INFO_HANDLE_BASIC)[1][0]
        assert k.object_get_info(c, vmo.MX_INFO_HANDLE_BASIC)[1].koid == koid
        assert api.handle_close(k, c) == 0
        assert k.stats()["vmos"] == 0 and k.stats()["handles"] == 0
        k._check()
    finally:
        k.close()


def test_closed_kernel_raises_value_error_in_every_twin(api):
    k = vmo.Kernel(memory_size=4 * PAGE)
    k.close()
    calls = [lambda: api.vmo_create(k, PAGE), lambda: api.vmo_create_contiguous(k, PAGE),
             lambda: api.vmo_get_size(k, 1), lambda: api.vmo_set_size(k, 1, 0),
             lambda: api.vmo_read_bytes(k, 1, 0, 1), lambda: api.vmo_write(k, 1, b"x", 0),
             lambda: api.vmo_op_range(k, 1, 1, 0, 1), lambda: api.lookup(k, 1, 0, 1, 1),
             lambda: api.commit(k, 1, 0, 1), lambda: api.decommit(k, 1, 0, 1),
             lambda: api.vmo_clone(k, 1, 1, 0, 1), lambda: api.vmo_committed_bytes(k, 1),
             lambda: api.handle_close(k, 1), lambda: api.handle_duplicate(k, 1, 0),
             lambda: api.handle_replace(k, 1, 0), lambda: api.object_get_info(k, 1, 2),
             lambda: api.event_create(k), lambda: api.phys_read(k, 0, 1),
             lambda: api.phys_write(k, 0, b"x")]
    for call in calls:
        with pytest.raises(ValueError):
            call()


def test_machine_services_through_the_c_api(api):
    """c_pin / c_unpin / c_host_address, c_lookup_runs and c_on_change / c_cancel_change
    (vmo/api.pxd): the same checks as their Python twins."""
    k = vmo.Kernel(memory_size=16 * PAGE)
    try:
        base = k.memory_base
        v = k.create_vmo(4 * PAGE)
        v.write(b"host bytes", 0)
        v.write(b"z", 2 * PAGE)
        st, host = api.host_address(k, base + 1, 4)
        assert st == 0 and api.host_bytes(host, 4) == b"ost "
        assert api.host_address(k, base + 5 * PAGE, 1) == (S.ERR_BAD_STATE, 0)
        assert api.host_address(k, base - 1, 1) == (S.ERR_OUT_OF_RANGE, 0)
        st, host = api.pin(k, base, PAGE)
        assert st == 0 and api.host_bytes(host, 10) == b"host bytes"
        assert k.stats()["pinned_frames"] == 1
        assert api.pin(k, base + 15 * PAGE, 1) == (S.ERR_BAD_STATE, 0)
        assert api.pin(k, base + 16 * PAGE, 1) == (S.ERR_OUT_OF_RANGE, 0)
        v.decommit(0, PAGE)                     # the frame stays pinned: nobody gets it
        assert k.stats()["free_frames"] == 16 - 2
        assert api.unpin(k, base, PAGE) == 0
        assert api.unpin(k, base, PAGE) == S.ERR_BAD_STATE   # not pinned any more
        assert api.unpin(k, base - PAGE, 1) == S.ERR_OUT_OF_RANGE
        assert k.stats()["pinned_frames"] == 0 and k.stats()["free_frames"] == 16 - 1
        # Physical runs: the C array, ERR_BUFFER_TOO_SMALL with the count needed.
        v.decommit()
        v.write(b"a", 0)
        v.write(b"b", 2 * PAGE)                 # a gap between: two runs at least
        want = k.vmo_lookup_runs(v.handle, 0, 4 * PAGE)[1]
        assert len(want) >= 2
        assert api.lookup_runs(k, v.handle, 0, 4 * PAGE, 16) == (0, len(want), want)
        assert api.lookup_runs(k, v.handle, 0, 4 * PAGE, 1) == (
            S.ERR_BUFFER_TOO_SMALL, len(want), want[:1])
        assert api.lookup_runs(k, v.handle, 0, 0, 16) == (S.ERR_INVALID_ARGS, 0, [])
        assert api.lookup_runs(k, v.handle, 0, 5 * PAGE, 16) == (S.ERR_OUT_OF_RANGE, 0, [])
        assert api.lookup_runs(k, 3, 0, 1, 16) == (S.ERR_BAD_HANDLE, 0, [])
        # Change notifications through a C function pointer, mixed with a Python one.
        st, sub = api.on_change(k, v.handle)
        assert st == 0 and sub >= 1
        py = []
        v.on_change(lambda o, n: py.append((o, n)))
        v.decommit(PAGE, 2 * PAGE)                # pages 1-2: only page 2 had a frame
        assert api.changes() == [(2 * PAGE, PAGE)] and py == [(2 * PAGE, PAGE)]
        assert api.on_change(k, 3) == (S.ERR_BAD_HANDLE, 0)
        assert api.cancel_change(k, sub) == 0
        assert api.cancel_change(k, sub) == S.ERR_NOT_FOUND
        v.size = 0
        assert api.changes() == [] and py == [(2 * PAGE, PAGE), (0, PAGE)]
        k._check()
    finally:
        k.close()
    with pytest.raises(ValueError):
        api.pin(k, 0, 1)
    # A C-level pin has no trace record: refused while recording (Kernel.pin is recorded).
    k = vmo.Kernel(memory_size=16 * PAGE)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with k.record(os.path.join(tmp, "t.trace")):
                v = k.create_vmo(PAGE)
                v.commit()
                paddr = v.lookup()[0]
                assert api.pin(k, paddr, PAGE) == (S.ERR_NOT_SUPPORTED, 0)
                assert api.unpin(k, paddr, PAGE) == S.ERR_NOT_SUPPORTED
                assert api.host_address(k, paddr, 1)[0] == 0
                k.pin(paddr, PAGE).unpin()
    finally:
        k.close()
    with pytest.raises(ValueError):
        api.lookup_runs(k, 1, 0, 1, 1)
    with pytest.raises(ValueError):
        api.on_change(k, 1)
def test_dirty_log_through_its_c_twin(api):
    """c_dirty_log: the addresses dirty_log() gives, ERR_BUFFER_TOO_SMALL (with the count
    needed, nothing cleared) when they do not fit, cleared only when asked."""
    k = vmo.Kernel(memory_size=64 * PAGE)
    try:
        st, h = k.vmo_create(8 * PAGE)
        k.vmo_write(h, b"w" * 5 * PAGE, PAGE)
        expected = list(k.dirty_log(clear=False))
        assert len(expected) == 5
        assert api.dirty_log(k, 4, True) == (Status.ERR_BUFFER_TOO_SMALL, 5, [])
        assert api.dirty_log(k, 64, False) == (0, 5, expected)
        assert api.dirty_log(k, 5, True) == (0, 5, expected)
        assert api.dirty_log(k, 0, True) == (0, 0, [])
        k.close()
        with pytest.raises(ValueError):
            api.dirty_log(k, 64, True)
    finally:
        k.close()
