"""VMO and event objects and their unchecked operations (see _vmobject.pxd).

Everything a VMO call does once its handle has been checked: the page walks, write faults
and copy-on-write, commit, decommit, resize, the one read/write chunk loop, LOOKUP, and the
release of an object when its last reference goes.
"""

cimport cython
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF
from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from vmo._frames cimport (FRAME_SIZE, bit_test, frame_pool, pool_find_run, pool_free_count,
                          pool_frame_ptr, pool_give, pool_mark_dirty, pool_paddr, pool_take,
                          pool_take_run)
from vmo._handles cimport handle_table
from vmo._pagetable cimport (pt_count, pt_fill, pt_free_nodes, pt_init, pt_lookup, pt_remove,
                             pt_set)
from vmo._status cimport (ERR_BUFFER_TOO_SMALL, ERR_INVALID_ARGS, ERR_NO_MEMORY,
                          ERR_OUT_OF_RANGE, MX_VMO_MAX_SIZE, NO_ERROR, PAGE_LIMIT, PAGE_MASK)


@cython.no_gc
@cython.trashcan(True)
@cython.final
cdef class VmoObject:
    def __cinit__(self):
        pt_init(&self.pt)

    def __dealloc__(self):
        # Normally vmo_unref destroyed it already; this only frees node memory.
        pt_free_nodes(&self.pt)


@cython.final
cdef class EventObject:
    pass


cdef inline uint64_t _pages_up(uint64_t nbytes) noexcept:
    """ceil(nbytes / PAGE_SIZE) without overflow."""
    return (nbytes >> PAGE_SHIFT) + ((nbytes & PAGE_MASK) != 0)


# -- lifetime ---------------------------------------------------------------------------------
cdef VmoObject vmo_new(kernel_state *ks, uint64_t size, VmoObject parent,
                       uint64_t parent_offset):
    """A new VMO of `size` bytes with one reference (its first handle), nothing committed;
    a copy-on-write clone of [parent_offset, ...) of `parent` when `parent` is not None
    (the parent gains a reference). O(1)."""
    cdef VmoObject v = VmoObject.__new__(VmoObject)
    v.size = size
    v.koid = ks.next_koid
    ks.next_koid += 1
    v.refs = 1
    v.alive = True
    if parent is not None:
        v.parent = parent
        v.parent_offset = parent_offset
        parent.refs += 1
    ks.nvmos += 1
    return v


cdef VmoObject vmo_new_contiguous(kernel_state *ks, uint64_t count, uint32_t align_log2):
    """A new VMO of `count` pages committed to one physically contiguous run at a multiple
    of 2**align_log2, or None if there is no such run (the caller returns ERR_NO_MEMORY).
    Cost: the pages, plus the search: one probe per held block met before the first fit."""
    cdef long long first
    cdef uint64_t i
    cdef VmoObject v
    if count > pool_free_count(&ks.pool):
        return None
    first = pool_find_run(&ks.pool, count, (<uint64_t>1) << align_log2)
    if first < 0:
        return None
    pool_take_run(&ks.pool, <uint64_t>first, count)
    v = vmo_new(ks, count << PAGE_SHIFT, None, 0)
    for i in range(count):
        if pt_set(&v.pt, i, <uint32_t>(first + i + 1)):
            raise MemoryError("page table node")
    return v


cdef EventObject event_new(kernel_state *ks):
    """A new event with the next koid. O(1)."""
    cdef EventObject ev = EventObject.__new__(EventObject)
    ev.koid = ks.next_koid
    ks.next_koid += 1
    return ev


cdef void vmo_unref(kernel_state *ks, VmoObject v) noexcept:
    """Drop one reference; when none is left, release the VMO: its pages go back to the pool
    in ascending page index, then its reference on its parent goes in turn (a loop, so clone
    chains of any depth are fine)."""
    cdef VmoObject parent
    while True:
        v.refs -= 1
        if v.refs > 0:
            return
        pt_remove(&v.pt, 0, PAGE_LIMIT, &ks.pool)
        pt_free_nodes(&v.pt)
        v.alive = False
        ks.nvmos -= 1
        parent = v.parent
        v.parent = None
        if parent is None:
            return
        v = parent


cdef void vmo_release_all(kernel_state *ks) noexcept:
    """Close every handle, lowest slot first, releasing each VMO whose last reference goes
    (the kernel's teardown)."""
    cdef handle_table *ht = &ks.handles
    cdef uint32_t slot
    cdef PyObject *p
    cdef object obj
    if ht.objs == NULL:
        return
    for slot in range(ht.nslots):
        p = ht.objs[slot]
        if p == NULL:
            continue
        ht.objs[slot] = NULL
        obj = <object>p
        Py_DECREF(obj)          # the table's reference; `obj` holds its own
        ht.count -= 1
        if type(obj) is VmoObject:
            vmo_unref(ks, <VmoObject>obj)
    obj = None


# -- faults -----------------------------------------------------------------------------------
cdef int _insert(kernel_state *ks, VmoObject v, uint64_t idx, uint32_t frame) except -1:
    """Put a frame just taken at page `idx`; if the host cannot allocate a node, the frame
    goes back to the pool before MemoryError propagates (nothing leaks)."""
    if pt_set(&v.pt, idx, frame + 1):
        pool_give(&ks.pool, &frame, 1)
        raise MemoryError("page table node")
    return 0


cdef uint64_t vmo_fault_cost(VmoObject v, uint64_t offset) noexcept:
    """Frames a write fault at `offset` would take (v holds no page there): the depth of
    the ancestor holding the page (one copy per level), or 1 for a zero page."""
    cdef uint64_t depth = 0
    while True:
        if offset >= v.size:
            return 1
        if depth and pt_get(&v.pt, offset >> PAGE_SHIFT):
            return depth
        if v.parent is None or offset > U64_MAX - v.parent_offset:
            return 1
        offset += v.parent_offset
        v = v.parent
        depth += 1


cdef int vmo_write_fault(kernel_state *ks, VmoObject v, uint64_t offset,
                         uint32_t *entry) except -2:
    """Find or make v's own page for a write at byte `offset` (< v.size): the own page;
    else a copy of the nearest ancestor's page, copied into every intermediate clone on
    the way (nearest to the holder first); else a zero page. Returns 0, or
    ERR_NO_MEMORY when a frame is needed and none is free (copies already made stay)."""
    cdef frame_pool *pool = &ks.pool
    cdef uint32_t e, f
    cdef uint64_t off = offset, depth = 0, n, i
    cdef Py_ssize_t j
    cdef VmoObject level = v
    # The levels that copy the page, and their offsets: C arrays, so no Python object is
    # allocated (and no garbage collection can run) between finding and inserting.
    cdef PyObject *levels_small[16]
    cdef uint64_t offsets_small[16]
    cdef PyObject **levels = levels_small
    cdef uint64_t *offsets = offsets_small
    e = pt_get(&v.pt, offset >> PAGE_SHIFT)
    if e:
        entry[0] = e
        return 0
    # Walk up until an ancestor holds the page (at `depth`) or the chain ends.
    while level.parent is not None and off <= U64_MAX - level.parent_offset:
        off += level.parent_offset
        level = level.parent
        depth += 1
        if off >= level.size:
            break
        e = pt_get(&level.pt, off >> PAGE_SHIFT)
        if e:
            break
    n = depth if e else 1
    if n > 16:
        levels = <PyObject **>malloc(n * sizeof(PyObject *))
        offsets = <uint64_t *>malloc(n * sizeof(uint64_t))
        if levels == NULL or offsets == NULL:
            free(levels)
            free(offsets)
            raise MemoryError("clone chain of depth %d" % n)
    try:
        level = v
        off = offset
        for i in range(n):
            levels[i] = <PyObject *>level
            offsets[i] = off
            if i + 1 < n:
                off += level.parent_offset
                level = level.parent
        # Copy into each level, the one nearest the holder first.
        for j in range(<Py_ssize_t>n - 1, -1, -1):
            if pool_free_count(pool) == 0:
                return ERR_NO_MEMORY
            f = pool_take(pool)
            if e and bit_test(pool.dirty, e - 1):
                memcpy(pool_frame_ptr(pool, f), pool_frame_ptr(pool, e - 1), FRAME_SIZE)
                pool_mark_dirty(pool, f)
            _insert(ks, <VmoObject>levels[j], offsets[j] >> PAGE_SHIFT, f)
            e = f + 1
    finally:
        if levels != levels_small:
            free(levels)
            free(offsets)
    entry[0] = e
    return 0


# -- op_range ---------------------------------------------------------------------------------
cdef int vmo_commit(kernel_state *ks, VmoObject v, uint64_t offset, uint64_t size) except -1000:
    """COMMIT [offset, offset+size) trimmed to the VMO, all or nothing (docs/magenta.md
    3.6.1, docs/api.md exception 2): ERR_OUT_OF_RANGE, ERR_NO_MEMORY."""
    cdef uint64_t trimmed, start, end, missing, need, idx
    cdef uint32_t e
    if not trim_range(offset, size, v.size, &trimmed):
        return ERR_OUT_OF_RANGE
    if trimmed == 0:
        return NO_ERROR
    start = offset >> PAGE_SHIFT
    end = _pages_up(offset + trimmed)
    missing = (end - start) - pt_count(&v.pt, start, end)
    if missing == 0:
        return NO_ERROR
    if missing > pool_free_count(&ks.pool):
        return ERR_NO_MEMORY
    if v.parent is None:
        if pt_fill(&v.pt, start, end, &ks.pool):
            raise MemoryError("page table node")
        return NO_ERROR
    # A clone: every missing page is a write fault; count the frames first.
    need = 0
    for idx in range(start, end):
        if not pt_get(&v.pt, idx):
            need += vmo_fault_cost(v, idx << PAGE_SHIFT)
    if need > pool_free_count(&ks.pool):
        return ERR_NO_MEMORY
    for idx in range(start, end):
        if not pt_get(&v.pt, idx):
            vmo_write_fault(ks, v, idx << PAGE_SHIFT, &e)
    return NO_ERROR


cdef int vmo_decommit(kernel_state *ks, VmoObject v, uint64_t offset,
                      uint64_t size) except -1000:
    """DECOMMIT the pages touching [offset, offset+size) trimmed to the VMO (docs/magenta.md
    3.6.2): ERR_OUT_OF_RANGE."""
    cdef uint64_t trimmed
    if not trim_range(offset, size, v.size, &trimmed):
        return ERR_OUT_OF_RANGE
    if trimmed:
        pt_remove(&v.pt, offset >> PAGE_SHIFT, _pages_up(offset + trimmed), &ks.pool)
    return NO_ERROR


cdef int vmo_lookup(kernel_state *ks, VmoObject v, uint64_t offset, uint64_t size,
                    uint8_t *buf, uint64_t buffer_size) except -1000:
    """LOOKUP (docs/magenta.md 3.6.4) from its null-buffer check on, in Magenta's order:
    ERR_INVALID_ARGS (no buffer), ERR_BUFFER_TOO_SMALL, ERR_INVALID_ARGS (size 0),
    ERR_OUT_OF_RANGE, ERR_NO_MEMORY (a page not committed). Entries are native uint64
    physical addresses."""
    cdef uint64_t first, end, npages, n, i, paddr
    cdef uint32_t e
    if buf == NULL:
        return ERR_INVALID_ARGS
    # Wrapping arithmetic, as Magenta computed it before any range check.
    first = offset & ~(<uint64_t>PAGE_MASK)
    end = (offset + size + PAGE_MASK) & ~(<uint64_t>PAGE_MASK)
    npages = (end - first) >> PAGE_SHIFT
    if npages * 8 > buffer_size:
        return ERR_BUFFER_TOO_SMALL
    if size == 0:
        return ERR_INVALID_ARGS
    if not in_range(offset, size, v.size):
        return ERR_OUT_OF_RANGE
    first >>= PAGE_SHIFT
    if v.parent is None and ((<uintptr_t>buf) & 7) == 0:
        n = pt_lookup(&v.pt, first, first + npages, &ks.pool, <uint64_t *>buf)
        return NO_ERROR if n == npages else ERR_NO_MEMORY
    for i in range(npages):
        e = vmo_find_page(v, (first + i) << PAGE_SHIFT)
        if e == 0:
            return ERR_NO_MEMORY
        paddr = pool_paddr(&ks.pool, e - 1)
        memcpy(buf + i * 8, &paddr, 8)
    return NO_ERROR


cdef int vmo_cache_op(kernel_state *ks, VmoObject v, uint32_t op, uint64_t offset,
                      uint64_t size) except -1000:
    """The cache ops (docs/magenta.md 3.6.5): ERR_INVALID_ARGS (size 0), ERR_OUT_OF_RANGE.
    Caches are not modelled yet: uncommitted pages are skipped and committed ones need no
    work, so validation is the whole operation; the cache model will start here."""
    if size == 0:
        return ERR_INVALID_ARGS
    if not in_range(offset, size, v.size):
        return ERR_OUT_OF_RANGE
    return NO_ERROR


cdef int vmo_resize(kernel_state *ks, VmoObject v, uint64_t size) except -1000:
    """vmo_set_size after the handle: ERR_OUT_OF_RANGE above MX_VMO_MAX_SIZE; shrinking
    frees the pages past ceil(size/4096) but keeps the stale bytes of the page holding the
    new end. Cost: the pages freed."""
    if size > MX_VMO_MAX_SIZE:
        return ERR_OUT_OF_RANGE
    if size < v.size:
        pt_remove(&v.pt, _pages_up(size), PAGE_LIMIT, &ks.pool)
    v.size = size
    return NO_ERROR


# -- read and write ---------------------------------------------------------------------------
cdef inline bint _aliases_memory(const frame_pool *pool, const uint8_t *buf,
                                 uint64_t n) noexcept:
    """True if [buf, buf+n) overlaps simulated physical memory (a phys_view passed as the
    buffer of a read or write)."""
    cdef const uint8_t *lo = pool.mem
    cdef const uint8_t *hi = lo + (pool.nframes << PAGE_SHIFT)
    return lo != NULL and buf < hi and buf + n > lo


cdef int _chunks(kernel_state *ks, VmoObject v, uint8_t *buf, uint64_t offset,
                 uint64_t end, bint write) except -1000:
    """The chunk loop over [offset, end) (inside the VMO): one page at a time, reads seeing
    own or ancestor pages (zeros where none), writes faulting pages in. ERR_NO_MEMORY when a
    write needs a frame and none is free (what was written before stays)."""
    cdef frame_pool *pool = &ks.pool
    cdef uint64_t pos = offset, chunk, page_off
    cdef uint32_t e
    cdef int status
    while pos < end:
        page_off = pos & PAGE_MASK
        chunk = FRAME_SIZE - page_off
        if chunk > end - pos:
            chunk = end - pos
        if write:
            e = pt_get(&v.pt, pos >> PAGE_SHIFT)
            if e == 0:
                if v.parent is None:
                    if pool_free_count(pool) == 0:
                        return ERR_NO_MEMORY
                    e = pool_take(pool)
                    _insert(ks, v, pos >> PAGE_SHIFT, e)
                    e += 1
                else:
                    status = vmo_write_fault(ks, v, pos, &e)
                    if status:
                        return status
            pool_mark_dirty(pool, e - 1)
            memcpy(pool_frame_ptr(pool, e - 1) + page_off, buf, chunk)
        else:
            e = vmo_find_page(v, pos)
            if e and bit_test(pool.dirty, e - 1):
                memcpy(buf, pool_frame_ptr(pool, e - 1) + page_off, chunk)
            else:
                memset(buf, 0, chunk)
        buf += chunk
        pos += chunk
    return NO_ERROR


cdef int vmo_transfer(kernel_state *ks, VmoObject v, uint8_t *buf, uint64_t offset,
                      uint64_t length, uint64_t *actual, bint write) except -1000:
    """vmo_read (`write` False: into `buf`) or vmo_write (from `buf`) after the handle and
    the buffer: ERR_OUT_OF_RANGE (offset > size, offset+length wraps), ERR_NO_MEMORY (a
    write short of frames). `actual` is the length trimmed to the VMO on success, else 0.
    A buffer that is simulated physical memory itself goes through a copy, so the result is
    as if the whole source were copied first (as the reference model does). O(length)."""
    cdef uint64_t trimmed
    cdef uint8_t *tmp
    cdef int status
    actual[0] = 0
    if not trim_range(offset, length, v.size, &trimmed):
        return ERR_OUT_OF_RANGE
    if trimmed and _aliases_memory(&ks.pool, buf, trimmed):
        tmp = <uint8_t *>malloc(trimmed)
        if tmp == NULL:
            raise MemoryError("bounce buffer of %d bytes" % trimmed)
        try:
            if write:
                memcpy(tmp, buf, trimmed)
            status = _chunks(ks, v, tmp, offset, offset + trimmed, write)
            if status == NO_ERROR and not write:
                memcpy(buf, tmp, trimmed)
        finally:
            free(tmp)
    else:
        status = _chunks(ks, v, buf, offset, offset + trimmed, write)
    if status == NO_ERROR:
        actual[0] = trimmed
    return status
