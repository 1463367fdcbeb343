"""Closing a kernel gives its arena back to the host (hardening: nothing leaks).

docs/api.md "The kernel": "`k.close()` (also `with vmo.Kernel() as k:`) releases the arena";
docs/semantics.md: "`Kernel.close()` with live views: the kernel is closed (every call raises
ValueError), but the arena stays mapped until the last view goes, so a view never points at freed
memory".

Measured from the outside, in /proc/self/status: VmSize (the process's address space) must drop
by about `memory_size` when a 1 TiB kernel is closed, or deleted unclosed and collected; VmRSS
must drop after 64 MiB were written and the kernel closed; a view alive across close() keeps
the arena mapped (and readable, writable) until it is released. The slack is generous (the
interpreter's own allocations move both numbers a little); nothing here measures time.
Linux only (/proc).
"""

import gc
import sys

import pytest

import vmo

PAGE = 4096
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
SLACK = 256 * MiB  # address space the interpreter may map or unmap meanwhile

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/status")


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/self/status" % field)


def vmsize():
    """The process's address space in bytes."""
    return _status_kib("VmSize") * 1024


def rss():
    """The process's resident memory in bytes."""
    return _status_kib("VmRSS") * 1024


@pytest.fixture(params=["core", "reference"])
def kernel_cls(request):
    if request.param == "core":
        return vmo.Kernel
    from vmo._reference import Kernel

    return Kernel


def _settle():
    gc.collect()
    gc.collect()


def test_close_releases_a_terabyte_of_address_space(kernel_cls):
    _settle()
    before = vmsize()
    k = kernel_cls(memory_size=TiB)
    mapped = vmsize()
    assert mapped - before >= TiB - SLACK, \
        "a 1 TiB kernel added only %d bytes of address space" % (mapped - before)
    status, h = k.vmo_create(4 * PAGE)
    assert status == vmo.NO_ERROR
    assert k.vmo_write(h, b"x" * 5000, 0) == (vmo.NO_ERROR, 5000)
    k.close()
    _settle()
    after = vmsize()
    assert mapped - after >= TiB - SLACK, \
        "close() gave back %d of the %d bytes of address space" % (mapped - after, TiB)
    assert after - before < SLACK, "%d bytes still mapped after close()" % (after - before)
    with pytest.raises(ValueError):
        k.stats()


def test_context_manager_releases_the_arena(kernel_cls):
    _settle()
    before = vmsize()
    with kernel_cls(memory_size=TiB) as k:
        assert vmsize() - before >= TiB - SLACK
        with k.create_vmo(PAGE) as v:
            v.write(b"abc")
    _settle()
    assert vmsize() - before < SLACK


def test_deleting_an_unclosed_kernel_releases_the_arena(kernel_cls):
    _settle()
    before = vmsize()
    k = kernel_cls(memory_size=TiB)
    status, h = k.vmo_create(8 * PAGE)
    assert k.vmo_write(h, b"y" * (8 * PAGE), 0) == (vmo.NO_ERROR, 8 * PAGE)
    status, c = k.vmo_clone(h, vmo.MX_VMO_CLONE_COPY_ON_WRITE, 0, 8 * PAGE)
    assert status == vmo.NO_ERROR
    assert vmsize() - before >= TiB - SLACK
    del k  # never closed, handles still open
    _settle()
    assert vmsize() - before < SLACK, "an unclosed kernel kept %d bytes mapped after gc" % (
        vmsize() - before)


def test_memory_map_kernel_releases_every_range(kernel_cls):
    _settle()
    before = vmsize()
    k = kernel_cls(memory=[(0x100000, TiB // 2), (1 << 50, TiB // 2)])
    assert vmsize() - before >= TiB - SLACK
    k.close()
    _settle()
    assert vmsize() - before < SLACK


def test_many_kernels_do_not_accumulate_address_space(kernel_cls):
    _settle()
    before = vmsize()
    for i in range(16):
        k = kernel_cls(memory_size=TiB)
        status, h = k.vmo_create(PAGE)
        k.vmo_write(h, b"z", 0)
        if i % 2:
            k.close()
        else:
            del k
            _settle()
    _settle()
    assert vmsize() - before < SLACK, "16 closed kernels left %d bytes mapped" % (
        vmsize() - before)


def _write(k, nbytes):
    status, h = k.vmo_create(nbytes)
    assert status == vmo.NO_ERROR
    chunk = b"\xa5" * MiB
    for off in range(0, nbytes, MiB):
        assert k.vmo_write(h, chunk, off) == (vmo.NO_ERROR, MiB)
    return h


@pytest.mark.parametrize("how", ["close", "del"])
@pytest.mark.skipif(vmo._kernel.BUILD["asan"],
                    reason="RSS is not meaningful under AddressSanitizer's quarantine")
def test_rss_drops_after_writing_64_mib_and_closing(kernel_cls, how):
    _settle()
    base = rss()
    k = kernel_cls(memory_size=128 * MiB)
    _write(k, 64 * MiB)
    written = rss()
    added = written - base
    assert added >= 48 * MiB, "writing 64 MiB added only %d bytes of RSS" % added
    if how == "close":
        k.close()
    else:
        del k
    _settle()
    after = rss()
    assert written - after >= added // 2, \
        "%s gave back %d of the %d bytes of RSS the writes added" % (how, written - after, added)


@pytest.mark.parametrize("how", ["release", "drop"])
def test_a_view_keeps_a_closed_kernels_arena_mapped(kernel_cls, how):
    """semantics: the arena stays mapped until the last view goes; the view still reads and
    writes its bytes meanwhile; then the address space goes back."""
    _settle()
    before = vmsize()
    k = kernel_cls(memory_size=TiB)
    status, h = k.vmo_create(3 * PAGE)
    assert k.vmo_write(h, b"hello, device", PAGE + 10) == (vmo.NO_ERROR, 13)
    from array import array

    paddrs = array("Q", [0])
    assert k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, PAGE, PAGE, paddrs) == vmo.NO_ERROR
    view = k.phys_view(paddrs[0], PAGE)
    assert bytes(view[10:23]) == b"hello, device"
    assert k.stats()["pinned_frames"] == 1
    k.close()
    _settle()
    assert k.closed
    with pytest.raises(ValueError):
        k.phys_read(paddrs[0], 1)
    with pytest.raises(ValueError):
        k.stats()
    assert vmsize() - before >= TiB - SLACK, "the arena was unmapped under a live view"
    # The view still works, on the memory it always had.
    assert bytes(view[10:23]) == b"hello, device"
    view[0:5] = b"still"
    assert bytes(view[0:5]) == b"still"
    assert view.nbytes == PAGE and not view.readonly
    if how == "release":
        view.release()
    else:
        del view
    _settle()
    assert vmsize() - before < SLACK, "the arena stayed mapped after its last view went"


def test_the_last_of_several_views_unmaps_the_arena(kernel_cls):
    _settle()
    before = vmsize()
    k = kernel_cls(memory_size=TiB)
    status, h = k.vmo_create(2 * PAGE)
    k.vmo_op_range(h, vmo.MX_VMO_OP_COMMIT, 0, 2 * PAGE)
    base = k.memory_base
    first = k.phys_view(base, PAGE)
    second = k.phys_view(base + 100, PAGE)  # overlaps the first, crosses into the next frame
    inner = memoryview(second)[5:10]  # a view taken from a view holds the arena too
    second.release()
    k.close()
    first.release()
    _settle()
    assert vmsize() - before >= TiB - SLACK, "unmapped while a derived view was alive"
    inner[:] = b"12345"
    assert bytes(inner) == b"12345"
    inner.release()
    _settle()
    assert vmsize() - before < SLACK


def test_closing_twice_and_calls_after_close(kernel_cls):
    """close() is idempotent; the arena is released once; every call afterwards raises
    ValueError (docs/api.md "The kernel")."""
    _settle()
    before = vmsize()
    k = kernel_cls(memory_size=TiB)
    status, h = k.vmo_create(PAGE)
    k.close()
    k.close()
    _settle()
    assert vmsize() - before < SLACK
    for call in (lambda: k.vmo_create(PAGE), lambda: k.vmo_read_bytes(h, 0, 1),
                 lambda: k.handle_close(h), lambda: k.phys_view(k.memory_base, 0),
                 lambda: k.create_vmo(PAGE), lambda: k.vmo_create_contiguous(PAGE)):
        with pytest.raises(ValueError):
            call()
