"""The Cython-level API: another extension cimports the kernel and calls it with C buffers.

The recipe (README and docs/api.md "Cython API"): ``from vmo._kernel cimport Kernel``, then call
``k.c_commit``, ``k.c_decommit``, ``k.c_lookup``, ``k.c_read``, ``k.c_write``, ``k.c_get_size``,
``k.c_op_range``, ``k.c_phys_read`` and ``k.c_phys_write`` with C arguments: no Python object is
created on the way, and each returns a status (0 or a negative Magenta error) instead of raising.
This test writes a tiny .pyx into a temporary directory, builds it with `Cython.Build.cythonize` +
setuptools against the *installed* package (its directory on the include path, so the shipped .pxd
files are what is compiled against), imports it and checks every result against the Python syscalls
on the same kernel, error statuses included.

Skipped, with the reason, only when Cython or a working C compiler is not available.
"""

import importlib.util
import os
import sys
import sysconfig
import textwrap

import pytest

import vmo
from vmo import Op, Status

PAGE = 4096
S = Status

PYX = textwrap.dedent(r'''
    # cython: language_level=3, boundscheck=False, wraparound=False
    from libc.stdint cimport uint32_t, uint64_t
    from libc.string cimport memcpy, memset

    from vmo._kernel cimport Kernel

    cdef enum:
        NBUF = 64

    def get_size(Kernel k, uint32_t handle):
        cdef uint64_t size = 0xABCD
        cdef int status = k.c_get_size(handle, &size)
        return status, size

    def commit(Kernel k, uint32_t handle, uint64_t offset, uint64_t size):
        return k.c_commit(handle, offset, size)

    def decommit(Kernel k, uint32_t handle, uint64_t offset, uint64_t size):
        return k.c_decommit(handle, offset, size)

    def op_range(Kernel k, uint32_t handle, uint32_t op, uint64_t offset, uint64_t size):
        return k.c_op_range(handle, op, offset, size, NULL, 0)

    def lookup(Kernel k, uint32_t handle, uint64_t offset, uint64_t size,
               uint64_t max_entries=NBUF):
        cdef uint64_t buf[NBUF]
        cdef int i, status
        for i in range(NBUF):
            buf[i] = 0xDEADBEEFDEADBEEF
        if max_entries > NBUF:
            max_entries = NBUF
        status = k.c_lookup(handle, offset, size, buf, max_entries)
        return status, [buf[i] for i in range(max_entries)]

    def write_pattern(Kernel k, uint32_t handle, uint64_t offset, uint64_t length, int seed):
        """c_write of `length` (<= 4096) bytes of a pattern from a C array."""
        cdef char data[4096]
        cdef uint64_t actual = 777
        cdef int i, status
        for i in range(4096):
            data[i] = <char>((i * 7 + seed) & 0xFF)
        status = k.c_write(handle, data, offset, length, &actual)
        return status, actual

    def read(Kernel k, uint32_t handle, uint64_t offset, uint64_t length):
        """c_read of `length` (<= 4096) bytes into a C array pre-filled with 0xA5."""
        cdef char data[4096]
        cdef uint64_t actual = 777
        cdef int status
        memset(data, 0xA5, 4096)
        status = k.c_read(handle, data, offset, length, &actual)
        return status, actual, data[:length]

    def phys_write(Kernel k, uint64_t paddr, bytes payload):
        cdef char data[4096]
        cdef uint64_t n = len(payload)
        memcpy(data, <const char *>payload, n)
        return k.c_phys_write(paddr, data, n)

    def phys_read(Kernel k, uint64_t paddr, uint64_t length):
        cdef char data[4096]
        cdef int status
        memset(data, 0xA5, 4096)
        status = k.c_phys_read(paddr, data, length)
        return status, data[:length]

    def dma_loop(Kernel k, uint32_t handle, uint64_t paddr, int rounds):
        """`rounds` device round trips with no Python object on the path: the device writes
        a byte, the driver reads it back through the VMO and writes the next one, which the
        device reads. Returns the number of rounds that saw the right bytes, or a status."""
        cdef unsigned char out, back
        cdef uint64_t actual
        cdef int i, status, good = 0
        for i in range(rounds):
            out = <unsigned char>(i & 0xFF)
            status = k.c_phys_write(paddr, &out, 1)
            if status:
                return status
            status = k.c_read(handle, &back, 0, 1, &actual)
            if status or actual != 1 or back != out:
                return status or -1000
            back = <unsigned char>(out + 1)
            status = k.c_write(handle, &back, 1, 1, &actual)
            if status:
                return status
            status = k.c_phys_read(paddr + 1, &out, 1)
            if status:
                return status
            if out == back:
                good += 1
        return good
''')


def _skip_reason(scratch):
    """Why the extension cannot be built here (no Cython, no working C compiler), or None."""
    try:
        from Cython.Build import cythonize  # noqa: F401
    except ImportError as exc:
        return "Cython is not installed (%s)" % exc
    try:
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler
    except ImportError as exc:
        return "setuptools is not installed (%s)" % exc
    probe = os.path.join(str(scratch), "probe.c")
    with open(probe, "w") as f:
        f.write("#include <Python.h>\nint vmo_probe(void) { return 0; }\n")
    compiler = new_compiler()
    customize_compiler(compiler)
    try:
        compiler.compile([probe], output_dir=str(scratch),
                         include_dirs=[sysconfig.get_paths()["include"]])
    except Exception as exc:  # noqa: BLE001  (CompileError, a missing executable...)
        return "no working C compiler for extensions: %s" % exc
    return None


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    """Build and import the cimporting extension (once per module)."""
    build = tmp_path_factory.mktemp("cimport_vmo")
    reason = _skip_reason(build)
    if reason:
        pytest.skip(reason)
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    (build / "vmo_client.pyx").write_text(PYX)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(vmo.__file__)))
    package_dir = os.path.dirname(os.path.abspath(vmo.__file__))
    old_cwd = os.getcwd()
    os.chdir(build)
    try:
        extension = Extension("vmo_client", ["vmo_client.pyx"],
                              include_dirs=[package_dir, package_parent],
                              extra_compile_args=["-O1"])
        modules = cythonize([extension], include_path=[package_parent], quiet=True,
                            compiler_directives={"language_level": 3})
        dist = Distribution({"name": "vmo_client", "ext_modules": modules})
        dist.script_args = ["build_ext", "--inplace", "--build-temp", str(build / "tmp")]
        dist.parse_command_line()
        dist.run_commands()
    finally:
        os.chdir(old_cwd)
    built = [p for p in build.iterdir() if p.name.startswith("vmo_client") and
             p.suffix in (".so", ".pyd")]
    assert built, "no extension module was built in %s" % build
    spec = importlib.util.spec_from_file_location("vmo_client", built[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["vmo_client"] = module
    return module


@pytest.fixture
def k():
    kernel = vmo.Kernel(memory_size=64 * PAGE)
    yield kernel
    kernel._check()
    kernel.close()


def test_the_extension_cimports_the_installed_package(ext):
    assert ext.__file__.endswith((".so", ".pyd"))
    assert callable(ext.commit) and callable(ext.phys_read)


def test_commit_lookup_decommit_match_the_syscalls(ext, k):
    status, h = k.vmo_create(8 * PAGE)
    assert status is S.NO_ERROR
    assert ext.get_size(k, h) == (0, 8 * PAGE)
    assert ext.commit(k, h, PAGE, 3 * PAGE) == 0
    assert k._vmo_pages(h)[1] == {1: k.memory_base, 2: k.memory_base + PAGE,
                                 3: k.memory_base + 2 * PAGE}
    st, entries = ext.lookup(k, h, PAGE, 3 * PAGE, 4)
    assert st == 0
    assert entries[:3] == [k.memory_base + i * PAGE for i in range(3)]
    assert entries[3] == 0xDEADBEEFDEADBEEF  # untouched past the range
    py = k.vmo_op_range  # the Python syscall gives the same addresses
    from array import array
    buf = array("Q", [0] * 3)
    assert py(h, Op.LOOKUP, PAGE, 3 * PAGE, buf) is S.NO_ERROR
    assert list(buf) == entries[:3]
    # Errors are statuses, the same as the syscalls return.
    assert ext.lookup(k, h, 0, 2 * PAGE, 2)[0] == S.ERR_NO_MEMORY == py(
        h, Op.LOOKUP, 0, 2 * PAGE, array("Q", [0] * 2))
    assert ext.lookup(k, h, PAGE, 3 * PAGE, 2)[0] == S.ERR_BUFFER_TOO_SMALL
    assert ext.lookup(k, h, PAGE, 0, 2)[0] == S.ERR_INVALID_ARGS
    assert ext.lookup(k, h, 8 * PAGE, PAGE, 2)[0] == S.ERR_OUT_OF_RANGE
    assert ext.commit(k, h, 9 * PAGE, PAGE) == S.ERR_OUT_OF_RANGE
    assert ext.commit(k, h, 0, 1 << 40) == 0  # trimmed to the VMO
    assert k.stats()["committed_frames"] == 8
    assert ext.decommit(k, h, PAGE + 1, 1) == 0  # the page holding the range
    assert 1 not in k._vmo_pages(h)[1]
    assert ext.op_range(k, h, Op.LOCK, 0, PAGE) == S.ERR_NOT_SUPPORTED
    assert ext.op_range(k, h, Op.CACHE_SYNC, 0, PAGE) == 0
    assert ext.op_range(k, h, 99, 0, PAGE) == S.ERR_INVALID_ARGS
    big = vmo.Kernel(memory_size=2 * PAGE)
    try:
        status, hb = big.vmo_create(4 * PAGE)
        assert ext.commit(big, hb, 0, 4 * PAGE) == S.ERR_NO_MEMORY
        assert big.stats()["free_frames"] == 2
    finally:
        big.close()


def test_read_write_match_the_syscalls(ext, k):
    _, h = k.vmo_create(3 * PAGE + 10)
    assert ext.write_pattern(k, h, PAGE - 5, 100, 3) == (0, 100)
    pattern = bytes((i * 7 + 3) & 0xFF for i in range(100))
    assert k.vmo_read_bytes(h, PAGE - 5, 100) == (S.NO_ERROR, pattern)
    st, actual, data = ext.read(k, h, PAGE - 10, 110)
    assert (st, actual, data) == (0, 110, bytes(5) + pattern + bytes(5))
    # Short at the end, like vmo_read: only `actual` bytes are written to the C buffer.
    st, actual, data = ext.read(k, h, 3 * PAGE, 100)
    assert (st, actual) == (0, 10) and data == bytes(10) + b"\xa5" * 90
    assert ext.write_pattern(k, h, 3 * PAGE + 5, 100, 0) == (0, 5)
    assert k.vmo_write(h, b"x" * 100, 3 * PAGE + 5) == (S.NO_ERROR, 5)
    # Error statuses: the same values as the Python syscalls return, actual 0.
    for bad in (0, 2, 12345, (1 << 31) - 1):
        assert ext.read(k, bad, 0, 10)[:2] == (S.ERR_BAD_HANDLE, 0)
        assert ext.write_pattern(k, bad, 0, 10, 0) == (S.ERR_BAD_HANDLE, 0)
        assert ext.get_size(k, bad)[0] == S.ERR_BAD_HANDLE == k.vmo_get_size(bad)[0]
        assert ext.commit(k, bad, 0, PAGE) == S.ERR_BAD_HANDLE
        assert ext.lookup(k, bad, 0, PAGE, 1)[0] == S.ERR_BAD_HANDLE
    assert ext.read(k, h, 3 * PAGE + 11, 1)[:2] == (S.ERR_OUT_OF_RANGE, 0)
    assert ext.read(k, h, (1 << 64) - 1, 2)[:2] == (S.ERR_OUT_OF_RANGE, 0)
    _, ro = k.handle_duplicate(h, vmo.MX_RIGHT_READ)
    assert ext.write_pattern(k, ro, 0, 1, 0) == (S.ERR_ACCESS_DENIED, 0)
    assert ext.read(k, ro, 0, 1)[:2] == (0, 1)
    _status, ev = k.event_create(0)
    assert ext.get_size(k, ev)[0] == S.ERR_WRONG_TYPE == k.vmo_get_size(ev)[0]
    assert ext.read(k, ev, 0, 1)[0] == S.ERR_WRONG_TYPE


def test_phys_access_matches_the_python_calls(ext, k):
    _status, h = k.vmo_create(2 * PAGE)
    assert ext.commit(k, h, 0, 2 * PAGE) == 0
    base = k.memory_base
    assert ext.phys_write(k, base + PAGE - 2, b"seam") == 0
    assert k.vmo_read_bytes(h, PAGE - 2, 4) == (S.NO_ERROR, b"seam")
    assert k.phys_read(base + PAGE - 2, 4) == b"seam"
    k.phys_write(base + 10, b"python")
    assert ext.phys_read(k, base + 10, 6) == (0, b"python")
    assert ext.phys_read(k, base, 0) == (0, b"")
    # The errors the Python calls raise come back as statuses.
    end = base + 64 * PAGE
    assert ext.phys_read(k, base - 1, 1)[0] == S.ERR_OUT_OF_RANGE
    assert ext.phys_read(k, end - 1, 2)[0] == S.ERR_OUT_OF_RANGE
    assert ext.phys_read(k, (1 << 64) - 1, 2)[0] == S.ERR_OUT_OF_RANGE
    assert ext.phys_read(k, base + 2 * PAGE, 1)[0] == S.ERR_BAD_STATE
    assert ext.phys_write(k, base + 2 * PAGE - 1, b"ab") == S.ERR_BAD_STATE
    assert k.vmo_read_bytes(h, 2 * PAGE - 1, 1) == (S.NO_ERROR, b"\x00")  # nothing written
    # Orphaned (pinned, let go) frames are ERR_BAD_STATE too.
    view = k.phys_view(base, 8)
    assert ext.decommit(k, h, 0, PAGE) == 0
    assert ext.phys_read(k, base, 1)[0] == S.ERR_BAD_STATE
    assert k.stats()["pinned_frames"] == 1
    view.release()
    assert k.stats()["pinned_frames"] == 0


def test_dma_loop_with_no_python_objects(ext, k):
    _status, h = k.vmo_create(PAGE)
    assert ext.commit(k, h, 0, PAGE) == 0
    paddr = k._vmo_pages(h)[1][0]
    assert ext.dma_loop(k, h, paddr, 10000) == 10000
    assert ext.dma_loop(k, h, paddr + PAGE, 1) == S.ERR_BAD_STATE
    assert ext.dma_loop(k, 2, paddr, 1) == S.ERR_BAD_HANDLE


def test_closed_kernel_and_wrong_argument_types(ext):
    kk = vmo.Kernel(memory_size=4 * PAGE)
    kk.close()
    with pytest.raises(ValueError):
        kk.vmo_create(PAGE)  # the Python layer
    with pytest.raises(TypeError):
        ext.commit(object(), 1, 0, PAGE)  # the typed argument is checked by Cython


def test_c_api_on_a_closed_kernel_raises_value_error(ext):
    """docs/api.md "The kernel": "any call after close raises ValueError"; the c_* methods can raise
    (they are declared ``except -1000``). Run in a subprocess, so a crash would fail the test, not
    the run."""
    import subprocess

    script = textwrap.dedent('''
        import vmo, vmo_client as ext
        k = vmo.Kernel(memory_size=4 * 4096)
        h = k.vmo_create(4096)[1]
        k.close()
        for call in (lambda: ext.get_size(k, h), lambda: ext.read(k, h, 0, 4),
                     lambda: ext.commit(k, h, 0, 4096), lambda: ext.lookup(k, h, 0, 4096, 1),
                     lambda: ext.phys_read(k, 0x100000, 1)):
            try:
                print("returned", call())
            except ValueError:
                print("ValueError")
    ''')
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([
        os.path.dirname(ext.__file__),
        os.path.dirname(os.path.dirname(os.path.abspath(vmo.__file__))),
        env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, "crashed with %d: %s" % (proc.returncode, proc.stderr[-500:])
    assert proc.stdout.split("\n")[:5] == ["ValueError"] * 5, proc.stdout
