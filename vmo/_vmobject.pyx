"""VMO and event objects and their unchecked operations (see _vmobject.pxd).

Everything a VMO call does once its handle has been checked: the page walks, write faults
and copy-on-write, commit, decommit, resize, the one read/write chunk loop, LOOKUP, and the
release of an object when its last reference goes. Objects are malloc'd C structs and every
function is `noexcept nogil`: the syscall layer may run any of them with the GIL released
(docs/semantics.md "Threads"); a host allocation failure returns HOST_NO_MEMORY.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from vmo._cache cimport (CACHE_CLEAN_INVALIDATE_OP, CACHE_CLEAN_OP, CACHE_INVALIDATE_OP,
                         cache_cpu, cache_op_page, cpu_cache)
from vmo._frames cimport (FRAME_SIZE, bit_test, frame_pool, pool_find_run, pool_free_count,
                          pool_frame_ptr, pool_give, pool_mark_dirty, pool_paddr, pool_take,
                          pool_save_takes, pool_take_run, snap_grow, snap_store)
from vmo._handles cimport handle_table
from vmo._pagetable cimport (pt_clone, pt_count, pt_fill, pt_free_nodes, pt_init, pt_lookup,
                             pt_next,
                             pt_remove, pt_set)
from vmo._status cimport (ERR_BUFFER_TOO_SMALL, ERR_INVALID_ARGS, ERR_NO_MEMORY,
                          ERR_OUT_OF_RANGE, HOST_NO_MEMORY, MX_VMO_MAX_SIZE,
                          MX_VMO_OP_CACHE_CLEAN_INVALIDATE, MX_VMO_OP_CACHE_INVALIDATE,
                          NO_ERROR, PAGE_LIMIT, PAGE_MASK)


cdef inline uint64_t _pages_up(uint64_t nbytes) noexcept nogil:
    """ceil(nbytes / PAGE_SIZE) without overflow."""
    return (nbytes >> PAGE_SHIFT) + ((nbytes & PAGE_MASK) != 0)


# -- lifetime ---------------------------------------------------------------------------------
cdef inline vm_object *_vmo_alloc(uint64_t size) noexcept nogil:
    """A zeroed VMO struct with no koid yet, or NULL if the host refuses."""
    cdef vm_object *v = <vm_object *>malloc(sizeof(vm_object))
    if v == NULL:
        return NULL
    v.hdr.type = OBJ_VMO
    v.hdr.koid = 0
    v.hdr.refs = 1
    pt_init(&v.pt)
    v.size = size
    v.parent_offset = 0
    v.parent = NULL
    v.alive = True
    return v


cdef inline void _new_serial(kernel_state *ks, obj_header *obj) noexcept nogil:
    """Name a new object for snapshots: a serial never used before, and no page-table
    pre-image to save (no live snapshot holds the object)."""
    obj.serial = ks.next_serial
    ks.next_serial += 1
    obj.saved_epoch = ks.pool.epochs
    obj.index = 0


cdef inline void _vmo_register(kernel_state *ks, vm_object *v) noexcept nogil:
    v.hdr.koid = ks.next_koid
    ks.next_koid += 1
    ks.nvmos += 1
    _new_serial(ks, &v.hdr)


# -- snapshots: a page table's pre-image (vmo/_snapshot.pyx restores it) ---------------------
cdef void vmo_save_table_slow(kernel_state *ks, vm_object *v) noexcept nogil:
    """v's page table is about to change for the first time since the latest snapshot:
    save a copy into its store. O(nodes of the table)."""
    cdef snap_store *s = ks.pool.snap
    cdef snap_table *t
    v.hdr.saved_epoch = ks.pool.snap_epoch
    if not snap_grow(&s.tables, &s.captables, s.ntables, sizeof(snap_table)):
        s.lost = True
        return
    t = &(<snap_table *>s.tables)[s.ntables]
    t.serial = v.hdr.serial
    if pt_clone(&v.pt, &t.pt):
        s.lost = True
        return
    s.ntables += 1


cdef vm_object *vmo_new(kernel_state *ks, uint64_t size, vm_object *parent,
                        uint64_t parent_offset) noexcept nogil:
    """A new VMO of `size` bytes with one reference (its first handle), nothing committed;
    a copy-on-write clone of [parent_offset, ...) of `parent` when `parent` is not NULL
    (the parent gains a reference). NULL if the host cannot allocate it (no koid is used,
    nothing changes). O(1)."""
    cdef vm_object *v = _vmo_alloc(size)
    if v == NULL:
        return NULL
    _vmo_register(ks, v)
    if parent != NULL:
        v.parent = parent
        v.parent_offset = parent_offset
        parent.hdr.refs += 1
    return v


cdef int vmo_new_contiguous(kernel_state *ks, uint64_t count, uint32_t align_log2,
                            vm_object **out) noexcept nogil:
    """A new VMO of `count` pages committed to one physically contiguous run at a multiple
    of 2**align_log2 in `out`: NO_ERROR, ERR_NO_MEMORY if there is no such run,
    HOST_NO_MEMORY (nothing taken, no koid used). Cost: the pages, plus the search: one
    probe per held block met before the first fit."""
    cdef long long first
    cdef uint64_t i, k
    cdef uint32_t f
    cdef vm_object *v
    out[0] = NULL
    if count > pool_free_count(&ks.pool):
        return ERR_NO_MEMORY
    first = pool_find_run(&ks.pool, count, (<uint64_t>1) << align_log2)
    if first < 0:
        return ERR_NO_MEMORY
    v = _vmo_alloc(count << PAGE_SHIFT)
    if v == NULL:
        return HOST_NO_MEMORY
    pool_take_run(&ks.pool, <uint64_t>first, count)
    for i in range(count):
        if pt_set(&v.pt, i, <uint32_t>(first + i + 1)):
            # Give back the pages set, then the rest of the run, and the struct.
            pt_remove(&v.pt, 0, PAGE_LIMIT, &ks.pool)
            pt_free_nodes(&v.pt)
            for k in range(i, count):
                f = <uint32_t>(first + k)
                pool_give(&ks.pool, &f, 1)
            free(v)
            return HOST_NO_MEMORY
    _vmo_register(ks, v)
    out[0] = v
    return NO_ERROR


cdef obj_header *event_new(kernel_state *ks) noexcept nogil:
    """A new event with one reference and the next koid, or NULL if the host refuses. O(1)."""
    cdef obj_header *ev = <obj_header *>malloc(sizeof(obj_header))
    if ev == NULL:
        return NULL
    ev.type = OBJ_EVENT
    ev.koid = ks.next_koid
    ks.next_koid += 1
    ev.refs = 1
    _new_serial(ks, ev)
    return ev


cdef void vmo_unref(kernel_state *ks, vm_object *v) noexcept nogil:
    """Drop one reference; when none is left, release the VMO: its pages go back to the pool
    in ascending page index, its struct is freed, then its reference on its parent goes in
    turn (a loop, so clone chains of any depth are fine)."""
    cdef vm_object *parent
    while True:
        v.hdr.refs -= 1
        if v.hdr.refs > 0:
            return
        vmo_save_table(ks, v)
        pt_remove(&v.pt, 0, PAGE_LIMIT, &ks.pool)
        pt_free_nodes(&v.pt)
        v.alive = False
        ks.nvmos -= 1
        parent = v.parent
        free(v)
        if parent == NULL:
            return
        v = parent


cdef void obj_unref(kernel_state *ks, obj_header *obj) noexcept nogil:
    """Drop one reference to any object (a closed handle's)."""
    if obj.type == OBJ_VMO:
        vmo_unref(ks, <vm_object *>obj)
        return
    obj.refs -= 1
    if obj.refs == 0:
        free(obj)


cdef uint64_t vmo_release_cost(const vm_object *v) noexcept nogil:
    """The work of dropping one reference to `v`: the pages it would free (its own and
    those of each ancestor whose last reference goes with it) plus one per object freed.
    Cost: the chain released."""
    cdef uint64_t n = 0
    while v != NULL and v.hdr.refs == 1:
        n += v.pt.npages + 1
        v = v.parent
    return n


cdef void vmo_release_all(kernel_state *ks) noexcept nogil:
    """Close every handle, lowest slot first, releasing each object whose last reference
    goes (the kernel's teardown)."""
    cdef handle_table *ht = &ks.handles
    cdef uint32_t slot
    cdef obj_header *p
    if ht.objs == NULL:
        return
    for slot in range(ht.nslots):
        p = ht.objs[slot]
        if p == NULL:
            continue
        ht.objs[slot] = NULL
        ht.count -= 1
        obj_unref(ks, p)


# -- faults -----------------------------------------------------------------------------------
cdef inline int _insert(kernel_state *ks, vm_object *v, uint64_t idx,
                        uint32_t frame) noexcept nogil:
    """Put a frame just taken at page `idx`: NO_ERROR, or HOST_NO_MEMORY if the host cannot
    allocate a node (the frame goes back to the pool first: nothing leaks)."""
    vmo_save_table(ks, v)
    if pt_set(&v.pt, idx, frame + 1):
        pool_give(&ks.pool, &frame, 1)
        return HOST_NO_MEMORY
    return NO_ERROR


cdef int _copy_cached(cpu_cache *c, frame_pool *pool, uint32_t src, uint64_t src_koid,
                      uint64_t src_off, uint32_t dst, uint64_t dst_koid,
                      uint64_t dst_off) noexcept nogil:
    """A copy-on-write copy on a non-coherent machine: the CPU reads the whole source page
    through the cache (fills, cpu-read-stale events) and writes it into the new frame's
    lines (dirty; RAM of the new frame stays zero until written back)."""
    cdef uint8_t page[4096]
    cdef int status = cache_cpu(c, pool, src, 0, page, FRAME_SIZE, src_koid, src_off, False)
    if status:
        return status
    return cache_cpu(c, pool, dst, 0, page, FRAME_SIZE, dst_koid, dst_off, True)


cdef uint64_t vmo_fault_cost(const vm_object *v, uint64_t offset) noexcept nogil:
    """Frames a write fault at `offset` would take (v holds no page there): the depth of
    the ancestor holding the page (one copy per level), or 1 for a zero page."""
    cdef uint64_t depth = 0
    while True:
        if offset >= v.size:
            return 1
        if depth and pt_get(&v.pt, offset >> PAGE_SHIFT):
            return depth
        if v.parent == NULL or offset > U64_MAX - v.parent_offset:
            return 1
        offset += v.parent_offset
        v = v.parent
        depth += 1


cdef int vmo_write_fault(kernel_state *ks, vm_object *v, uint64_t offset,
                         uint32_t *entry) noexcept nogil:
    """Find or make v's own page for a write at byte `offset` (< v.size): the own page;
    else a copy of the nearest ancestor's page, copied into every intermediate clone on
    the way (nearest to the holder first); else a zero page. Returns 0, ERR_NO_MEMORY when
    a frame is needed and none is free (copies already made stay), or HOST_NO_MEMORY."""
    cdef frame_pool *pool = &ks.pool
    cdef uint32_t e, f
    cdef uint64_t off = offset, depth = 0, n, i
    cdef Py_ssize_t j
    cdef int status = NO_ERROR
    cdef vm_object *level = v
    cdef uint64_t src_koid, src_off
    # The levels that copy the page, and their offsets (on the stack for short chains).
    cdef vm_object *levels_small[16]
    cdef uint64_t offsets_small[16]
    cdef vm_object **levels = levels_small
    cdef uint64_t *offsets = offsets_small
    e = pt_get(&v.pt, offset >> PAGE_SHIFT)
    if e:
        entry[0] = e
        return 0
    # Walk up until an ancestor holds the page (at `depth`) or the chain ends.
    while level.parent != NULL and off <= U64_MAX - level.parent_offset:
        off += level.parent_offset
        level = level.parent
        depth += 1
        if off >= level.size:
            break
        e = pt_get(&level.pt, off >> PAGE_SHIFT)
        if e:
            break
    n = depth if e else 1
    src_koid = level.hdr.koid
    src_off = off & ~(<uint64_t>PAGE_MASK)
    if n > 16:
        levels = <vm_object **>malloc(n * sizeof(vm_object *))
        offsets = <uint64_t *>malloc(n * sizeof(uint64_t))
        if levels == NULL or offsets == NULL:
            free(levels)
            free(offsets)
            return HOST_NO_MEMORY
    level = v
    off = offset
    for i in range(n):
        levels[i] = level
        offsets[i] = off
        if i + 1 < n:
            off += level.parent_offset
            level = level.parent
    # Copy into each level, the one nearest the holder first.
    for j in range(<Py_ssize_t>n - 1, -1, -1):
        if pool_free_count(pool) == 0:
            status = ERR_NO_MEMORY
            break
        f = pool_take(pool)
        if ks.cache != NULL:
            # Non-coherent: the kernel's copy is a CPU read of the page and a CPU write.
            if e:
                status = _copy_cached(ks.cache, pool, e - 1, src_koid, src_off, f,
                                      levels[j].hdr.koid, offsets[j] & ~(<uint64_t>PAGE_MASK))
                if status:
                    pool_give(pool, &f, 1)
                    break
        elif e and bit_test(pool.dirty, e - 1):
            pool_mark_dirty(pool, f)    # before the bytes change (snapshots save them)
            memcpy(pool_frame_ptr(pool, f), pool_frame_ptr(pool, e - 1), FRAME_SIZE)
        status = _insert(ks, levels[j], offsets[j] >> PAGE_SHIFT, f)
        if status:
            break
        e = f + 1
        src_koid = levels[j].hdr.koid
        src_off = offsets[j] & ~(<uint64_t>PAGE_MASK)
    if levels != levels_small:
        free(levels)
        free(offsets)
    entry[0] = e
    return status


# -- op_range ---------------------------------------------------------------------------------
cdef int vmo_commit(kernel_state *ks, vm_object *v, uint64_t offset,
                    uint64_t size) noexcept nogil:
    """COMMIT [offset, offset+size) trimmed to the VMO, all or nothing (docs/magenta.md
    3.6.1, docs/api.md exception 2): ERR_OUT_OF_RANGE, ERR_NO_MEMORY (HOST_NO_MEMORY: the
    pages filled so far stay)."""
    cdef uint64_t trimmed, start, end, missing, need, idx
    cdef uint32_t e
    cdef int status
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
    if v.parent == NULL:
        vmo_save_table(ks, v)
        if ks.pool.snap_epoch:
            pool_save_takes(&ks.pool, missing)
        return HOST_NO_MEMORY if pt_fill(&v.pt, start, end, &ks.pool) else NO_ERROR
    # A clone: every missing page is a write fault; count the frames first.
    need = 0
    for idx in range(start, end):
        if not pt_get(&v.pt, idx):
            need += vmo_fault_cost(v, idx << PAGE_SHIFT)
    if need > pool_free_count(&ks.pool):
        return ERR_NO_MEMORY
    for idx in range(start, end):
        if not pt_get(&v.pt, idx):
            status = vmo_write_fault(ks, v, idx << PAGE_SHIFT, &e)
            if status:
                return status
    return NO_ERROR


cdef int vmo_decommit(kernel_state *ks, vm_object *v, uint64_t offset,
                      uint64_t size) noexcept nogil:
    """DECOMMIT the pages touching [offset, offset+size) trimmed to the VMO (docs/magenta.md
    3.6.2): ERR_OUT_OF_RANGE."""
    cdef uint64_t trimmed
    if not trim_range(offset, size, v.size, &trimmed):
        return ERR_OUT_OF_RANGE
    if trimmed:
        vmo_save_table(ks, v)
        pt_remove(&v.pt, offset >> PAGE_SHIFT, _pages_up(offset + trimmed), &ks.pool)
    return NO_ERROR


cdef int vmo_lookup(kernel_state *ks, vm_object *v, uint64_t offset, uint64_t size,
                    uint8_t *buf, uint64_t buffer_size) noexcept nogil:
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
    if v.parent == NULL and ((<uintptr_t>buf) & 7) == 0:
        n = pt_lookup(&v.pt, first, first + npages, &ks.pool, <uint64_t *>buf)
        return NO_ERROR if n == npages else ERR_NO_MEMORY
    for i in range(npages):
        e = vmo_find_page(v, (first + i) << PAGE_SHIFT)
        if e == 0:
            return ERR_NO_MEMORY
        paddr = pool_paddr(&ks.pool, e - 1)
        memcpy(buf + i * 8, &paddr, 8)
    return NO_ERROR


cdef int vmo_cache_op(kernel_state *ks, vm_object *v, uint32_t op, uint64_t offset,
                      uint64_t size) noexcept nogil:
    """The cache ops (docs/magenta.md 3.6.5): ERR_INVALID_ARGS (size 0), ERR_OUT_OF_RANGE.
    Caches are not modelled yet: uncommitted pages are skipped and committed ones need no
    work, so validation is the whole operation; the cache model will start here."""
    if size == 0:
        return ERR_INVALID_ARGS
    if not in_range(offset, size, v.size):
        return ERR_OUT_OF_RANGE
    if ks.cache != NULL:
        _cache_op_cached(ks, v, op, offset, offset + size)
    return NO_ERROR


cdef inline uint32_t _find_holder(const vm_object *v, uint64_t offset, uint64_t *koid,
                                  uint64_t *holder_offset) noexcept nogil:
    """vmo_find_page, also giving the VMO holding the page (koid) and the byte offset
    there."""
    cdef uint32_t entry
    while True:
        if offset >= v.size:
            return 0
        entry = pt_get(&v.pt, offset >> PAGE_SHIFT)
        if entry or v.parent == NULL:
            koid[0] = v.hdr.koid
            holder_offset[0] = offset
            return entry
        if offset > U64_MAX - v.parent_offset:
            return 0
        offset += v.parent_offset
        v = v.parent


cdef void _cache_op_cached(kernel_state *ks, vm_object *v, uint32_t op, uint64_t offset,
                           uint64_t end) noexcept nogil:
    """The cache op's effect on a non-coherent machine, over each page LOOKUP would give
    for [offset, end) (a checked range) by ascending offset, on the lines overlapping the
    range. A VMO that is not a clone walks its committed pages only (cost: committed pages
    and their cached lines); a clone visits each page of the range."""
    cdef int kind = (CACHE_INVALIDATE_OP if op == MX_VMO_OP_CACHE_INVALIDATE else
                     CACHE_CLEAN_INVALIDATE_OP if op == MX_VMO_OP_CACHE_CLEAN_INVALIDATE
                     else CACHE_CLEAN_OP)
    cdef uint64_t idx, last = (end - 1) >> PAGE_SHIFT, start, koid, hoff, lo, hi
    cdef uint32_t e
    idx = offset >> PAGE_SHIFT
    while idx <= last:
        if v.parent == NULL:
            if not pt_next(&v.pt, idx, last + 1, &idx, &e):
                return
        else:
            e = _find_holder(v, idx << PAGE_SHIFT, &koid, &hoff)
        if e:
            start = idx << PAGE_SHIFT
            lo = offset - start if offset > start else 0
            hi = end - start if end - start < FRAME_SIZE else FRAME_SIZE
            cache_op_page(ks.cache, &ks.pool, e - 1, lo, hi, kind)
        idx += 1


cdef int vmo_resize(kernel_state *ks, vm_object *v, uint64_t size) noexcept nogil:
    """vmo_set_size after the handle: ERR_OUT_OF_RANGE above MX_VMO_MAX_SIZE; shrinking
    frees the pages past ceil(size/4096) but keeps the stale bytes of the page holding the
    new end. Cost: the pages freed."""
    if size > MX_VMO_MAX_SIZE:
        return ERR_OUT_OF_RANGE
    if size < v.size:
        vmo_save_table(ks, v)
        pt_remove(&v.pt, _pages_up(size), PAGE_LIMIT, &ks.pool)
    v.size = size
    return NO_ERROR


# -- read and write ---------------------------------------------------------------------------
cdef inline bint _aliases_memory(const frame_pool *pool, const uint8_t *buf,
                                 uint64_t n) noexcept nogil:
    """True if [buf, buf+n) overlaps simulated physical memory (a phys_view passed as the
    buffer of a read or write)."""
    cdef const uint8_t *lo = pool.mem
    cdef const uint8_t *hi = lo + (pool.nframes << PAGE_SHIFT)
    return lo != NULL and buf < hi and buf + n > lo


cdef int _chunks(kernel_state *ks, vm_object *v, uint8_t *buf, uint64_t offset,
                 uint64_t end, bint write) noexcept nogil:
    """The chunk loop over [offset, end) (inside the VMO): one page at a time, reads seeing
    own or ancestor pages (zeros where none), writes faulting pages in. ERR_NO_MEMORY when a
    write needs a frame and none is free, HOST_NO_MEMORY (what was written before stays)."""
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
                if v.parent == NULL:
                    if pool_free_count(pool) == 0:
                        return ERR_NO_MEMORY
                    e = pool_take(pool)
                    if _insert(ks, v, pos >> PAGE_SHIFT, e):
                        return HOST_NO_MEMORY
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


cdef int _chunks_cached_loop(kernel_state *ks, vm_object *v, uint8_t *buf,
                             uint64_t offset, uint64_t end, bint write) noexcept nogil:
    """_chunks on a non-coherent machine: each chunk goes through the CPU cache (reads
    never allocate frames: a page without one reads as zeros, no line)."""
    cdef frame_pool *pool = &ks.pool
    cdef uint64_t pos = offset, chunk, page_off, koid, hoff
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
                if v.parent == NULL:
                    if pool_free_count(pool) == 0:
                        return ERR_NO_MEMORY
                    e = pool_take(pool)
                    if _insert(ks, v, pos >> PAGE_SHIFT, e):
                        return HOST_NO_MEMORY
                    e += 1
                else:
                    status = vmo_write_fault(ks, v, pos, &e)
                    if status:
                        return status
            status = cache_cpu(ks.cache, pool, e - 1, page_off, buf, chunk, v.hdr.koid,
                               pos - page_off, True)
        else:
            e = _find_holder(v, pos, &koid, &hoff)
            if e:
                status = cache_cpu(ks.cache, pool, e - 1, page_off, buf, chunk, koid,
                                   hoff - page_off, False)
            else:
                memset(buf, 0, chunk)
                status = NO_ERROR
        if status:
            return status
        buf += chunk
        pos += chunk
    return NO_ERROR


cdef int _chunks_cached(kernel_state *ks, vm_object *v, uint8_t *buf, uint64_t offset,
                        uint64_t end, bint write, uint64_t n) noexcept nogil:
    """A buffer that is simulated physical memory itself (a physical view) goes through a
    copy, as on the coherent path."""
    cdef uint8_t *tmp
    cdef int status
    if not (n and _aliases_memory(&ks.pool, buf, n)):
        return _chunks_cached_loop(ks, v, buf, offset, end, write)
    tmp = <uint8_t *>malloc(n)
    if tmp == NULL:
        return HOST_NO_MEMORY
    if write:
        memcpy(tmp, buf, n)
    status = _chunks_cached_loop(ks, v, tmp, offset, end, write)
    if status == NO_ERROR and not write:
        memcpy(buf, tmp, n)
    free(tmp)
    return status


cdef int vmo_transfer(kernel_state *ks, vm_object *v, uint8_t *buf, uint64_t offset,
                      uint64_t length, uint64_t *actual, bint write) noexcept nogil:
    """vmo_read (`write` False: into `buf`) or vmo_write (from `buf`) after the handle and
    the buffer: ERR_OUT_OF_RANGE (offset > size, offset+length wraps), ERR_NO_MEMORY (a
    write short of frames), HOST_NO_MEMORY. `actual` is the length trimmed to the VMO on
    success, else 0. A buffer that is simulated physical memory itself goes through a
    copy, so the result is as if the whole source were copied first (as the reference
    model does). O(length)."""
    cdef uint64_t trimmed
    cdef uint8_t *tmp
    cdef int status
    actual[0] = 0
    if not trim_range(offset, length, v.size, &trimmed):
        return ERR_OUT_OF_RANGE
    if ks.cache != NULL:
        # Non-coherent: through the CPU cache (the cache never aliases the arena).
        status = _chunks_cached(ks, v, buf, offset, offset + trimmed, write, trimmed)
    elif trimmed and _aliases_memory(&ks.pool, buf, trimmed):
        tmp = <uint8_t *>malloc(trimmed)
        if tmp == NULL:
            return HOST_NO_MEMORY
        if write:
            memcpy(tmp, buf, trimmed)
        status = _chunks(ks, v, tmp, offset, offset + trimmed, write)
        if status == NO_ERROR and not write:
            memcpy(buf, tmp, trimmed)
        free(tmp)
    else:
        status = _chunks(ks, v, buf, offset, offset + trimmed, write)
    if status == NO_ERROR:
        actual[0] = trimmed
    return status
