"""VMO and event objects and their unchecked operations (see _vmobject.pxd).

Everything a VMO call does once its handle has been checked: the page walks, write faults
and copy-on-write, commit, decommit, resize, the one read/write chunk loop, LOOKUP, and the
release of an object when its last reference goes. Objects are malloc'd C structs and every
function is `noexcept nogil`: the syscall layer may run any of them with the GIL released
(docs/semantics.md "Threads"); a host allocation failure returns HOST_NO_MEMORY.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

from vmo._cache cimport (CACHE_CLEAN_INVALIDATE_OP, CACHE_CLEAN_OP, CACHE_INVALIDATE_OP,
                         cache_cpu, cache_op_page, cpu_cache)
from vmo._frames cimport (FRAME_SIZE, bit_test, frame_pool, pool_find_run, pool_free_count,
                          pool_frame_ptr, pool_give, pool_mark_dirty, pool_paddr, pool_take,
                          pool_save_takes, pool_take_run)
from vmo._handles cimport handle_table
from vmo._pagetable cimport (pt_count, pt_fill, pt_free_nodes, pt_init, pt_lookup, pt_next,
                             pt_remove, pt_set)
from vmo._state cimport change_event, notify_state, watch_entry
from vmo._status cimport (ERR_BUFFER_TOO_SMALL, ERR_INVALID_ARGS, ERR_NO_MEMORY,
                          ERR_OUT_OF_RANGE, HOST_NO_MEMORY, MX_VMO_MAX_SIZE,
                          MX_VMO_OP_CACHE_CLEAN_INVALIDATE, MX_VMO_OP_CACHE_INVALIDATE,
                          NO_ERROR, PAGE_LIMIT, PAGE_MASK)


cdef extern from *:
    # Cython's own branch hint (__builtin_expect): the watched paths are the cold ones.
    bint unlikely(bint condition) nogil


cdef inline uint64_t _pages_up(uint64_t nbytes) noexcept nogil:
    """ceil(nbytes / PAGE_SIZE) without overflow."""
    return (nbytes >> PAGE_SHIFT) + ((nbytes & PAGE_MASK) != 0)


# -- change notifications (docs/semantics.md "Change notifications") -------------------------
# A call that may change which frames back a VMO's pages (DECOMMIT, shrink, a clone's write
# faults, the destruction of a VMO) asks, when something is watched (ks.notify not NULL),
# which watched VMOs see the pages it touches (the VMO itself and its descendants), takes
# their visible runs over that range before the change and after it, and appends one event
# per maximal range of pages whose frame changed or went. Nothing here touches Python: the
# events are delivered after the call, with the GIL (notify_deliver, _kernelcore.pyx).

cdef struct watch_snap:
    const vm_object *w      # a watched VMO that sees the changed pages
    uint64_t koid
    uint64_t start          # its page range that may change
    uint64_t end
    run_list before         # its visible runs there, before the change


cdef struct change_scope:
    watch_snap *snaps
    uint64_t n


cdef void notify_event(kernel_state *ks, uint64_t koid, uint64_t offset, uint64_t length,
                       bint destroyed) noexcept nogil:
    """Queue one event (`lost` is set if the host refuses to grow the queue)."""
    cdef notify_state *ns = ks.notify
    cdef change_event *grown
    cdef uint64_t cap
    if ns.nevents == ns.cap_events:
        cap = ns.cap_events * 2 if ns.cap_events else 16
        grown = <change_event *>realloc(ns.events, cap * sizeof(change_event))
        if grown == NULL:
            ns.lost = True
            return
        ns.events = grown
        ns.cap_events = cap
    ns.events[ns.nevents].koid = koid
    ns.events[ns.nevents].offset = offset
    ns.events[ns.nevents].length = length
    ns.events[ns.nevents].destroyed = destroyed
    ns.nevents += 1


cdef void _notify_before(kernel_state *ks, const vm_object *v, uint64_t a, uint64_t b,
                         change_scope *sc) noexcept nogil:
    """Before `v`'s pages [a, b) change: snapshot every watched VMO that sees them (v or a
    descendant, each once, in koid order). Cost: the watched VMOs' chains up to v, and their
    visible pages in the range."""
    cdef notify_state *ns = ks.notify
    cdef const watch_entry *e
    cdef const vm_object *w
    cdef const vm_object *level
    cdef watch_snap *snap
    cdef uint64_t i, shift
    sc.n = 0
    sc.snaps = NULL
    if ns.nentries == 0 or a >= b:
        return
    sc.snaps = <watch_snap *>malloc(ns.nentries * sizeof(watch_snap))
    if sc.snaps == NULL:
        ns.lost = True
        return
    for i in range(ns.nentries):
        e = &ns.entries[i]
        if e.obj == NULL or (i and ns.entries[i - 1].koid == e.koid):
            continue
        w = <const vm_object *>e.obj
        # Page index of w + shift = page index of v, when v is w or an ancestor.
        shift = 0
        level = w
        while level != v and level != NULL:
            shift += level.parent_offset >> PAGE_SHIFT
            if shift > PAGE_LIMIT:
                shift = PAGE_LIMIT      # beyond every page: nothing of v is seen
            level = level.parent
        if level == NULL or b <= shift:
            continue
        snap = &sc.snaps[sc.n]
        snap.w = w
        snap.koid = e.koid
        snap.start = a - shift if a > shift else 0
        snap.end = b - shift
        snap.before.runs = NULL
        snap.before.count = 0
        snap.before.cap = 0
        if vmo_visible_runs(ks, w, snap.start, snap.end, &snap.before):
            free(snap.before.runs)
            ns.lost = True
            continue
        if snap.before.count:
            sc.n += 1
        else:
            free(snap.before.runs)


cdef const vm_object *_scope_root(const vm_object *v, uint64_t *a, uint64_t *b) noexcept nogil:
    """The root of `v`'s clone chain, with v's pages [a, b) as the root's page indices: a
    clone's write faults copy into the levels between it and the holder of a page too, so
    every VMO of the tree may see a change (saturating: past PAGE_LIMIT nothing is seen)."""
    cdef uint64_t shift = 0
    while v.parent != NULL:
        shift += v.parent_offset >> PAGE_SHIFT
        if shift > PAGE_LIMIT:
            shift = PAGE_LIMIT
        v = v.parent
    a[0] = a[0] + shift if a[0] < PAGE_LIMIT else PAGE_LIMIT
    b[0] = b[0] + shift if b[0] < PAGE_LIMIT else PAGE_LIMIT
    return v


cdef void _notify_after(kernel_state *ks, change_scope *sc) noexcept nogil:
    """After the change: for each snapshot, one event per maximal range of pages that had a
    frame before and now have another or none. Frees the scope. Cost: the pages
    snapshotted."""
    cdef uint64_t i, r, j, o, end, before, after, cur_start, cur_end
    cdef watch_snap *snap
    cdef run_list now
    cdef const vmo_run *br
    cdef const vmo_run *ar
    for i in range(sc.n):
        snap = &sc.snaps[i]
        now.runs = NULL
        now.count = 0
        now.cap = 0
        if vmo_visible_runs(ks, snap.w, snap.start, snap.end, &now):
            ks.notify.lost = True
        j = 0
        cur_start = cur_end = 0
        for r in range(snap.before.count):
            br = &snap.before.runs[r]
            o = br.offset
            end = br.offset + br.length
            while o < end:
                while j < now.count and now.runs[j].offset + now.runs[j].length <= o:
                    j += 1
                before = br.paddr + (o - br.offset)
                after = 1       # no frame (never a page's address: addresses are aligned)
                if j < now.count and now.runs[j].offset <= o:
                    ar = &now.runs[j]
                    after = ar.paddr + (o - ar.offset)
                if after != before:
                    if cur_end != o or cur_end == cur_start:
                        if cur_end != cur_start:
                            notify_event(ks, snap.koid, cur_start, cur_end - cur_start, False)
                        cur_start = o
                    cur_end = o + FRAME_SIZE
                o += FRAME_SIZE
        if cur_end != cur_start:
            notify_event(ks, snap.koid, cur_start, cur_end - cur_start, False)
        free(now.runs)
        free(snap.before.runs)
    free(sc.snaps)
    sc.snaps = NULL
    sc.n = 0


cdef void _notify_destroyed(kernel_state *ks, const vm_object *v) noexcept nogil:
    """`v` is being destroyed: its subscriptions get one event for the whole VMO (none for
    an empty one) and end with it."""
    cdef notify_state *ns = ks.notify
    cdef uint64_t i
    cdef bint watched = False
    for i in range(ns.nentries):
        if ns.entries[i].obj == <void *>v:
            ns.entries[i].obj = NULL
            watched = True
    if watched:
        notify_event(ks, v.hdr.koid, 0, _pages_up(v.size) << PAGE_SHIFT, True)


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
    """Name a new object for snapshots: a serial never used before (its page-table leaves'
    pre-images are saved under it)."""
    obj.serial = ks.next_serial
    ks.next_serial += 1
    obj.index = 0


cdef inline void _vmo_register(kernel_state *ks, vm_object *v) noexcept nogil:
    """Give a new VMO its koid (its serial is given before its page table first changes:
    the leaves' pre-images are saved under it)."""
    v.hdr.koid = ks.next_koid
    ks.next_koid += 1
    ks.nvmos += 1


cdef vm_object *vmo_new(kernel_state *ks, uint64_t size, vm_object *parent,
                        uint64_t parent_offset) noexcept nogil:
    """A new VMO of `size` bytes with one reference (its first handle), nothing committed;
    a copy-on-write clone of [parent_offset, ...) of `parent` when `parent` is not NULL
    (the parent gains a reference). NULL if the host cannot allocate it (no koid is used,
    nothing changes). O(1)."""
    cdef vm_object *v = _vmo_alloc(size)
    if v == NULL:
        return NULL
    _new_serial(ks, &v.hdr)
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
    _new_serial(ks, &v.hdr)     # before pt_set: a snapshot saves its leaves by the serial
    for i in range(count):
        if pt_set(&v.pt, i, <uint32_t>(first + i + 1), &ks.pool, v.hdr.serial):
            # Give back the pages set, then the rest of the run, and the struct.
            pt_remove(&v.pt, 0, PAGE_LIMIT, &ks.pool, v.hdr.serial)
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
        if unlikely(ks.notify != NULL):
            _notify_destroyed(ks, v)
        pt_remove(&v.pt, 0, PAGE_LIMIT, &ks.pool, v.hdr.serial)    # saves each leaf
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
    if pt_set(&v.pt, idx, frame + 1, &ks.pool, v.hdr.serial):
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
    cdef uint64_t trimmed, start, end, missing, need, idx, a, b
    cdef uint32_t e
    cdef int status = NO_ERROR
    cdef change_scope scope
    cdef const vm_object *root
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
        if ks.pool.snap_epoch:
            pool_save_takes(&ks.pool, missing)
        return (HOST_NO_MEMORY if pt_fill(&v.pt, start, end, &ks.pool, v.hdr.serial)
                else NO_ERROR)
    # A clone: every missing page is a write fault; count the frames first.
    need = 0
    for idx in range(start, end):
        if not pt_get(&v.pt, idx):
            need += vmo_fault_cost(v, idx << PAGE_SHIFT)
    if need > pool_free_count(&ks.pool):
        return ERR_NO_MEMORY
    if ks.notify != NULL:
        a = start
        b = end
        root = _scope_root(v, &a, &b)     # before reading a and b
        _notify_before(ks, root, a, b, &scope)
    for idx in range(start, end):
        if not pt_get(&v.pt, idx):
            status = vmo_write_fault(ks, v, idx << PAGE_SHIFT, &e)
            if status:
                break
    if ks.notify != NULL:
        _notify_after(ks, &scope)
    return status


cdef void _remove_watched(kernel_state *ks, vm_object *v, uint64_t start, uint64_t end,
                          uint64_t new_size=U64_MAX) noexcept nogil:
    """DECOMMIT (pages [start, end)) or, with `new_size`, a shrink (then the pages from
    `start` on) while something is watched: the change between two snapshots of the watched
    VMOs that see v's pages there (out of line: the common path pays one test)."""
    cdef change_scope scope
    _notify_before(ks, v, start, end, &scope)
    if new_size != U64_MAX:
        pt_remove(&v.pt, start, PAGE_LIMIT, &ks.pool, v.hdr.serial)
        v.size = new_size
    else:
        pt_remove(&v.pt, start, end, &ks.pool, v.hdr.serial)
    _notify_after(ks, &scope)


cdef int vmo_decommit(kernel_state *ks, vm_object *v, uint64_t offset,
                      uint64_t size) noexcept nogil:
    """DECOMMIT the pages touching [offset, offset+size) trimmed to the VMO (docs/magenta.md
    3.6.2): ERR_OUT_OF_RANGE."""
    cdef uint64_t trimmed
    if not trim_range(offset, size, v.size, &trimmed):
        return ERR_OUT_OF_RANGE
    if trimmed:
        if unlikely(ks.notify != NULL):
            _remove_watched(ks, v, offset >> PAGE_SHIFT, _pages_up(offset + trimmed))
        else:
            pt_remove(&v.pt, offset >> PAGE_SHIFT, _pages_up(offset + trimmed), &ks.pool,
                      v.hdr.serial)
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


# -- physical runs (Vmo.lookup_runs) ---------------------------------------------------------
cdef int _run_add(run_list *out, uint64_t idx, uint64_t paddr, bint own) noexcept nogil:
    """Append page `idx` (frame at `paddr`) to the runs, extending the last run when the
    page and its frame follow it with the same owner flag. 0, or HOST_NO_MEMORY."""
    cdef vmo_run *last
    cdef vmo_run *grown
    cdef uint64_t cap
    if out.count:
        last = &out.runs[out.count - 1]
        if (last.offset + last.length == idx << PAGE_SHIFT
                and last.paddr + last.length == paddr and last.own == <uint64_t>own):
            last.length += FRAME_SIZE
            return NO_ERROR
    if out.count == out.cap:
        cap = out.cap * 2 if out.cap else 16
        grown = <vmo_run *>realloc(out.runs, cap * sizeof(vmo_run))
        if grown == NULL:
            return HOST_NO_MEMORY
        out.runs = grown
        out.cap = cap
    last = &out.runs[out.count]
    last.offset = idx << PAGE_SHIFT
    last.paddr = paddr
    last.length = FRAME_SIZE
    last.own = own
    out.count += 1
    return NO_ERROR


cdef struct _walk_level:
    # One level of the visible-page walk: pages [pos, end) of `v` still to visit, and
    # `base`, what to subtract from an index of `v` to get the walked VMO's index.
    const vm_object *v
    uint64_t pos
    uint64_t end
    uint64_t base


cdef int vmo_visible_runs(kernel_state *ks, const vm_object *v, uint64_t start,
                          uint64_t end, run_list *out) noexcept nogil:
    """Append the runs of the pages of `v` in page indices [start, end) that have a frame
    (own, or an ancestor's: what vmo_find_page sees), ascending. Own pages come from v's
    table; each gap between them is looked up in the parent, and so on up (an explicit
    stack, as chains may be thousands deep). 0 or HOST_NO_MEMORY. Cost: the committed pages
    met in the range at each level, plus one table probe per gap per level."""
    cdef _walk_level small[16]
    cdef _walk_level *stack = small
    cdef _walk_level *grown
    cdef _walk_level *top
    cdef uint64_t depth = 1, cap = 16, idx = 0, nxt, po, lim
    cdef uint32_t e = 0
    cdef bint found
    cdef const vm_object *p
    cdef int status = NO_ERROR
    lim = _pages_up(v.size)
    stack[0].v = v
    stack[0].pos = start
    stack[0].end = end if end < lim else lim
    stack[0].base = 0
    while depth:
        top = &stack[depth - 1]
        if top.pos >= top.end:
            depth -= 1
            continue
        found = pt_next(&top.v.pt, top.pos, top.end, &idx, &e)
        nxt = idx if found else top.end
        if top.pos < nxt and top.v.parent != NULL:
            # The gap [pos, nxt) first, in the parent; this level resumes at nxt.
            p = top.v.parent
            po = top.v.parent_offset >> PAGE_SHIFT
            lim = _pages_up(p.size)
            start = top.pos + po
            end = nxt + po if nxt + po < lim else lim
            top.pos = nxt
            if start < end:
                if depth == cap:
                    grown = <_walk_level *>malloc(2 * cap * sizeof(_walk_level))
                    if grown == NULL:
                        status = HOST_NO_MEMORY
                        break
                    memcpy(grown, stack, cap * sizeof(_walk_level))
                    if stack != small:
                        free(stack)
                    stack = grown
                    cap *= 2
                stack[depth].v = p
                stack[depth].pos = start
                stack[depth].end = end
                stack[depth].base = stack[depth - 1].base + po
                depth += 1
            continue
        if not found:
            top.pos = top.end
            continue
        status = _run_add(out, idx - top.base, pool_paddr(&ks.pool, e - 1), depth == 1)
        if status:
            break
        top.pos = idx + 1
    if stack != small:
        free(stack)
    return status


cdef int vmo_lookup_runs(kernel_state *ks, const vm_object *v, uint64_t offset,
                         uint64_t size, run_list *out) noexcept nogil:
    """Vmo.lookup_runs after the handle: LOOKUP's checks without the buffer ones, in its
    order (ERR_INVALID_ARGS for size 0, ERR_OUT_OF_RANGE unless InRange), then the runs of
    the committed pages touching the range (uncommitted pages skipped) appended to `out`;
    HOST_NO_MEMORY. Cost: as vmo_visible_runs."""
    if size == 0:
        return ERR_INVALID_ARGS
    if not in_range(offset, size, v.size):
        return ERR_OUT_OF_RANGE
    return vmo_visible_runs(ks, v, offset >> PAGE_SHIFT, _pages_up(offset + size), out)


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
        if unlikely(ks.notify != NULL):
            # The pages past the new end are the ones that may lose their frames (own ones
            # freed; an ancestor's no longer seen, by v and its clones).
            _remove_watched(ks, v, _pages_up(size), _pages_up(v.size), size)
            return NO_ERROR
        pt_remove(&v.pt, _pages_up(size), PAGE_LIMIT, &ks.pool, v.hdr.serial)
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


cdef int _transfer_watched(kernel_state *ks, vm_object *v, uint8_t *buf, uint64_t offset,
                           uint64_t trimmed, uint64_t *actual) noexcept nogil:
    """vmo_transfer's write to a clone while something is watched: its write faults may
    replace frames seen by it, the levels between it and a page's holder, and their
    clones (out of line: the common path pays one test of ks.notify)."""
    cdef uint64_t a = offset >> PAGE_SHIFT, b = _pages_up(offset + trimmed)
    cdef change_scope scope
    cdef const vm_object *root = _scope_root(v, &a, &b)     # before reading a and b
    cdef notify_state *ns = ks.notify
    cdef int status
    _notify_before(ks, root, a, b, &scope)
    ks.notify = NULL        # the transfer itself, as if nothing were watched
    status = vmo_transfer(ks, v, buf, offset, trimmed, actual, True)
    ks.notify = ns
    _notify_after(ks, &scope)
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
    if unlikely(ks.notify != NULL) and write and v.parent != NULL and trimmed:
        return _transfer_watched(ks, v, buf, offset, trimmed, actual)
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
