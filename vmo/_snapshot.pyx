"""Snapshots and restore, and reading the dirty log (see _snapshot.pxd).

docs/semantics.md "Snapshots". The state of a kernel is, at the unit of what changes:
  - per frame: its bytes (with its `dirty` bit) and its allocator entry (freed-list links,
    held and orphan bits, pin count): pre-images saved on their first change since the
    latest snapshot (_frames.pyx), so a restore costs the frames changed, not the memory;
  - per page-table leaf (512 entries of one VMO): its entries, or "absent" when the change
    makes it, saved on its first change (_pagetable.pyx); a restore puts back the earliest
    pre-image of each leaf changed, making and dropping leaves and interior nodes;
  - objects (headers, sizes, parents), the handle table, the koid counter and the
    allocator's counters: copied whole when the snapshot is taken, O(objects + handles).
A store holds the pre-images saved while its snapshot was the latest live one, in the order
saved. The content of a unit at snapshot S is its pre-image in the EARLIEST store, from S's
on, that holds one, or else its live content (unchanged since S). Restoring S applies the
stores from the latest back to S's, each backwards, so the earliest pre-image is applied
last; each write is itself a change, saved into the latest store first, so every live
snapshot stays restorable. A dropped snapshot's store is appended to the previous live one's
(its records come later there, so the previous one's own still win), or freed if it was the
oldest.

Objects are named by `obj_header.serial`, never reused in a kernel's lifetime (a koid is,
once a restore rewinds the counter).
"""

cimport cython
from cpython.array cimport array as c_array
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport bsearch, calloc, free, malloc, qsort, realloc
from libc.string cimport memcpy, memset

from vmo._frames cimport (FRAME_SIZE, bit_clear, bit_set, bit_test, frame_pool,
                          pool_frame_ptr, pool_log, pool_paddr, pool_save_bytes,
                          pool_save_entry, snap_bytes, snap_entry, snap_grow)
from vmo._object cimport OBJ_VMO, obj_header
from vmo._pagetable cimport (pt_free_nodes, pt_init, pt_leaf, pt_prepare_leaf, pt_prune_leaf,
                             pt_put_leaf, pt_save_all, snap_leaf, snap_leafset_rebuild)
from vmo._state cimport ks_wait_idle
from vmo._status cimport ERR_BUFFER_TOO_SMALL, NO_ERROR
from vmo._vmobject cimport vm_object

from array import array

from vmo.errors import MxError, Status


# -- the live objects ----------------------------------------------------------------------

cdef obj_header **_live_objects(kernel_state *ks, Py_ssize_t *n) except? NULL:
    """Every live object: those behind handles, lowest slot first, each followed by its
    ancestors not met yet. Sets each one's `index` to its position + 1 (the caller resets
    them). O(handles + objects)."""
    cdef obj_header **out = NULL
    cdef uint64_t cap = 0, count = 0
    cdef uint32_t slot
    cdef obj_header *p
    for slot in range(ks.handles.nslots):
        p = ks.handles.objs[slot]
        while p != NULL and p.index == 0:
            if not snap_grow(<void **>&out, &cap, count, sizeof(obj_header *)):
                _reset_index(out, count)
                free(out)
                raise MemoryError("cannot list the kernel's objects")
            out[count] = p
            count += 1
            p.index = <uint32_t>count
            p = <obj_header *>(<vm_object *>p).parent if p.type == OBJ_VMO else NULL
    n[0] = <Py_ssize_t>count
    if out == NULL:
        out = <obj_header **>malloc(sizeof(obj_header *))
        if out == NULL:
            raise MemoryError("cannot list the kernel's objects")
    return out


cdef void _reset_index(obj_header **objs, uint64_t n) noexcept nogil:
    cdef uint64_t i
    for i in range(n):
        objs[i].index = 0


# -- taking ---------------------------------------------------------------------------------

cdef Snapshot snap_take(kernel_state *ks, object kernel):
    """A new snapshot, now the latest live one. MxError(ERR_BAD_STATE) while a frame is
    pinned (a pin belongs to a live view or Pin, which a snapshot cannot hold).
    O(objects + handles)."""
    cdef Snapshot s = Snapshot.__new__(Snapshot)
    cdef frame_pool *p = &ks.pool
    cdef obj_header **objs
    cdef obj_header *o
    cdef vm_object *v
    cdef Py_ssize_t n = 0, i
    cdef uint32_t slot, nslots = ks.handles.nslots
    cdef snap_store *st
    if p.npinned:
        raise MxError(Status.ERR_BAD_STATE, "a snapshot cannot be taken while frames are pinned")
    if p.epochs == 0xFFFFFFFF:
        raise OverflowError("too many snapshots taken on this kernel")
    s.kernel = kernel
    s.ks = ks
    # Making the Python object may have run other threads: wait for any owner again.
    ks_wait_idle(ks)
    if ks.closed:
        raise ValueError("kernel is closed")
    objs = _live_objects(ks, &n)
    try:
        s.objs = <snap_obj *>malloc((n if n else 1) * sizeof(snap_obj))
        s.rights = <uint32_t *>malloc((nslots if nslots else 1) * sizeof(uint32_t))
        s.gen = <uint16_t *>malloc((nslots if nslots else 1) * sizeof(uint16_t))
        s.slot_objs = <int64_t *>malloc((nslots if nslots else 1) * sizeof(int64_t))
        s.free_slots = <uint32_t *>malloc((ks.handles.nfree if ks.handles.nfree else 1)
                                          * sizeof(uint32_t))
        st = <snap_store *>calloc(1, sizeof(snap_store))
        if (s.objs == NULL or s.rights == NULL or s.gen == NULL or s.slot_objs == NULL
                or s.free_slots == NULL or st == NULL):
            free(st)
            raise MemoryError("cannot allocate a snapshot")
        for i in range(n):
            o = objs[i]
            s.objs[i].type = o.type
            s.objs[i].koid = o.koid
            s.objs[i].refs = o.refs
            s.objs[i].serial = o.serial
            s.objs[i].size = 0
            s.objs[i].parent_offset = 0
            s.objs[i].parent = -1
            if o.type == OBJ_VMO:
                v = <vm_object *>o
                s.objs[i].size = v.size
                s.objs[i].parent_offset = v.parent_offset
                if v.parent != NULL:
                    s.objs[i].parent = <int64_t>v.parent.hdr.index - 1
        for slot in range(nslots):
            s.rights[slot] = ks.handles.rights[slot]
            s.gen[slot] = ks.handles.gen[slot]
            o = ks.handles.objs[slot]
            s.slot_objs[slot] = <int64_t>o.index - 1 if o != NULL else -1
        memcpy(s.free_slots, ks.handles.free_slots, ks.handles.nfree * sizeof(uint32_t))
    finally:
        _reset_index(objs, n)
        free(objs)
    s.nobjs = n
    s.nslots = nslots
    s.nfree_slots = ks.handles.nfree
    s.nhandles = ks.handles.count
    s.next_koid = ks.next_koid
    s.nvmos = ks.nvmos
    s.next_fresh = p.next_fresh
    s.held_above = p.held_above
    s.nfree = p.nfree
    s.head = p.head
    s.list_len = p.list_len
    s.npinned = p.npinned
    s.released_runs = p.released_runs
    s.zeroed_frames = p.zeroed_frames
    # Link it in as the latest: from now on every first change saves into its store.
    p.epochs += 1
    st.epoch = p.epochs
    st.older = p.snap
    if p.snap != NULL:
        p.snap.newer = st
    p.snap = st
    p.snap_epoch = st.epoch
    s.store = st
    return s


# -- restoring ------------------------------------------------------------------------------

cdef int _cmp_serial(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<obj_header **>a)[0].serial, y = (<obj_header **>b)[0].serial
    return (x > y) - (x < y)


cdef int _cmp_key(const void *key, const void *elem) noexcept nogil:
    cdef uint64_t x = (<uint64_t *>key)[0], y = (<obj_header **>elem)[0].serial
    return (x > y) - (x < y)


cdef struct _serial_idx:
    uint64_t serial
    int64_t index


cdef int _cmp_serial_idx(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<_serial_idx *>a).serial, y = (<_serial_idx *>b).serial
    return (x > y) - (x < y)


cdef inline void _fix_summary(frame_pool *p, uint64_t f) noexcept nogil:
    cdef uint64_t w = f >> 6
    if p.held[w]:
        bit_set(p.anyheld, w)
    else:
        bit_clear(p.anyheld, w)
    if p.held[w] == <uint64_t>0xFFFFFFFFFFFFFFFFULL:
        bit_set(p.fullheld, w)
    else:
        bit_clear(p.fullheld, w)


cdef void _apply_frames(frame_pool *p, snap_store *oldest) noexcept nogil:
    """The frames' bytes, allocator entries and dirty log, from the latest store back to
    `oldest` (each store backwards: the earliest pre-image is written last)."""
    cdef snap_store *st = p.snap
    cdef snap_bytes b
    cdef snap_entry e
    cdef uint64_t i, n
    cdef uint32_t f
    while True:
        n = st.nbytes
        for i in range(n):
            b = st.bytes[n - 1 - i]
            pool_save_bytes(p, b.frame)     # into the latest store (may move st.bytes)
            if b.dirty:
                memcpy(pool_frame_ptr(p, b.frame), b.data, FRAME_SIZE)
                bit_set(p.dirty, b.frame)
            elif bit_test(p.dirty, b.frame):
                memset(pool_frame_ptr(p, b.frame), 0, FRAME_SIZE)
                bit_clear(p.dirty, b.frame)
        n = st.nentries
        for i in range(n):
            e = st.entries[n - 1 - i]
            pool_save_entry(p, e.frame)
            p.lnext[e.frame] = e.lnext
            p.lprev[e.frame] = e.lprev
            p.pincount[e.frame] = e.pincount
            if e.held:
                bit_set(p.held, e.frame)
            else:
                bit_clear(p.held, e.frame)
            if e.orphan:
                bit_set(p.orphan, e.frame)
            else:
                bit_clear(p.orphan, e.frame)
            _fix_summary(p, e.frame)
        n = st.nlogged
        for i in range(n):
            f = st.logged[i]
            pool_log(p, f)
        if st == oldest:
            break
        st = st.older


cdef struct _pick:
    # A leaf pre-image that applies to the snapshot being restored: of its object `obj`
    # (an index into its objects), leaf `lidx`, saved `seq`-th from its store on.
    int64_t obj
    uint64_t lidx
    uint64_t seq
    const pt_leaf *data


cdef int _cmp_pick(const void *a, const void *b) noexcept nogil:
    cdef const _pick *x = <const _pick *>a
    cdef const _pick *y = <const _pick *>b
    if x.obj != y.obj:
        return -1 if x.obj < y.obj else 1
    if x.lidx != y.lidx:
        return -1 if x.lidx < y.lidx else 1
    return (x.seq > y.seq) - (x.seq < y.seq)


cdef _pick *_picks(frame_pool *p, Snapshot s, const _serial_idx *by_serial,
                   uint64_t *npicks) noexcept nogil:
    """The leaf pre-images that make the tables of `s`'s objects: from s's store to the
    latest, the earliest one of each (object, leaf). NULL if the host refuses. O(r log r)
    for r leaf pre-images saved since s."""
    cdef snap_store *st = s.store
    cdef _pick *out = NULL
    cdef uint64_t cap = 0, n = 0, seq = 0, i, kept
    cdef const snap_leaf *rec
    cdef _serial_idx key
    cdef const _serial_idx *hit
    while st != NULL:
        for i in range(st.nleaves):
            rec = &(<const snap_leaf *>st.leaves)[i]
            seq += 1
            key.serial = rec.serial
            hit = <const _serial_idx *>bsearch(&key, by_serial, s.nobjs, sizeof(_serial_idx),
                                               _cmp_serial_idx)
            if hit == NULL:
                continue            # an object made after s
            if not snap_grow(<void **>&out, &cap, n, sizeof(_pick)):
                free(out)
                return NULL
            out[n].obj = hit.index
            out[n].lidx = rec.lidx
            out[n].seq = seq
            out[n].data = rec.data
            n += 1
        st = st.newer
    if out == NULL:
        out = <_pick *>malloc(sizeof(_pick))
        if out == NULL:
            return NULL
    qsort(out, n, sizeof(_pick), _cmp_pick)
    kept = 0
    for i in range(n):
        if kept and out[kept - 1].obj == out[i].obj and out[kept - 1].lidx == out[i].lidx:
            continue                # a later pre-image of a leaf: the earliest wins
        out[kept] = out[i]
        kept += 1
    npicks[0] = kept
    return out


cdef int snap_restore(kernel_state *ks, object kernel, Snapshot s) except -1:
    """Make the kernel what it was when `s` was taken (docs/semantics.md "Snapshots").
    The caller checked: open, idle, not recording. ValueError for another kernel's
    snapshot, MxError(ERR_BAD_STATE) while a frame is pinned (nothing changes),
    MemoryError if the host refuses memory (nothing changes). Cost: the pre-images saved
    since `s` (frames and page-table leaves changed), plus objects and handles."""
    cdef frame_pool *p = &ks.pool
    cdef obj_header **live = NULL
    cdef obj_header **found
    cdef obj_header **target = NULL
    cdef _pick *picks = NULL
    cdef uint64_t npicks = 0, prepared = 0
    cdef _serial_idx *by_serial = NULL
    cdef Py_ssize_t nlive = 0, i, j, n = s.nobjs
    cdef uint64_t k
    cdef snap_obj *so
    cdef obj_header *o
    cdef vm_object *v
    cdef bint failed = False
    if s.kernel is not kernel or s.store == NULL:
        raise ValueError("this snapshot belongs to another kernel")
    if s.store.lost:
        raise MemoryError("this snapshot lost a pre-image to a host allocation failure")
    if p.npinned:
        raise MxError(Status.ERR_BAD_STATE, "cannot restore while frames are pinned")
    live = _live_objects(ks, &nlive)
    _reset_index(live, nlive)
    try:
        qsort(live, nlive, sizeof(obj_header *), _cmp_serial)
        target = <obj_header **>calloc(n + 1, sizeof(obj_header *))
        by_serial = <_serial_idx *>malloc((n + 1) * sizeof(_serial_idx))
        if target == NULL or by_serial == NULL:
            raise MemoryError("cannot restore a snapshot")
        for j in range(n):
            by_serial[j].serial = s.objs[j].serial
            by_serial[j].index = j
        qsort(by_serial, n, sizeof(_serial_idx), _cmp_serial_idx)
        # Which leaves come from a pre-image: the earliest one from s's store on.
        picks = _picks(p, s, by_serial, &npicks)
        if picks == NULL:
            raise MemoryError("cannot restore a snapshot")
        # Everything that can fail first: the objects to make again, then the leaves (and
        # their paths) that pre-images will fill, made empty in their tables.
        for j in range(n):
            so = &s.objs[j]
            found = <obj_header **>bsearch(&so.serial, live, nlive, sizeof(obj_header *),
                                           _cmp_key)
            if found != NULL:
                target[j] = found[0]
                target[j].index = 1             # kept
            else:
                target[j] = <obj_header *>malloc(
                    sizeof(vm_object) if so.type == OBJ_VMO else sizeof(obj_header))
                if target[j] == NULL:
                    failed = True
                    break
                target[j].index = 2             # made again
                if so.type == OBJ_VMO:
                    # Destroyed since the snapshot: its leaves were saved as its pages went.
                    pt_init(&(<vm_object *>target[j]).pt)
        if not failed:
            for k in range(npicks):
                if picks[k].data == NULL:
                    continue
                if pt_prepare_leaf(&(<vm_object *>target[picks[k].obj]).pt, picks[k].lidx, p,
                                   s.objs[picks[k].obj].serial):
                    prepared = k + 1            # this one may be half made
                    failed = True
                    break
        if failed:
            for k in range(prepared):
                if picks[k].data != NULL:
                    pt_prune_leaf(&(<vm_object *>target[picks[k].obj]).pt, picks[k].lidx)
            for j in range(n):
                if target[j] != NULL:
                    if target[j].index == 2:
                        if s.objs[j].type == OBJ_VMO:
                            pt_free_nodes(&(<vm_object *>target[j]).pt)
                        free(target[j])
                    else:
                        target[j].index = 0
            raise MemoryError("cannot restore a snapshot")
        # From here nothing fails (a pre-image the latest store cannot take marks it lost).
        # The objects that are not in the snapshot go (their frames come back through the
        # allocator's entries, not through pool_give); their leaves are saved for the
        # newer snapshots that hold them.
        for i in range(nlive):
            o = live[i]
            if o.index:
                continue
            if o.type == OBJ_VMO:
                v = <vm_object *>o
                pt_save_all(&v.pt, p, o.serial)
                pt_free_nodes(&v.pt)
                v.alive = False
            free(o)
        # The leaves: each changed one takes its pre-image (or goes), saved first itself.
        for k in range(npicks):
            pt_put_leaf(&(<vm_object *>target[picks[k].obj]).pt, picks[k].lidx, picks[k].data,
                        p, s.objs[picks[k].obj].serial)
        for j in range(n):
            so = &s.objs[j]
            o = target[j]
            o.index = 0
            o.type = so.type
            o.koid = so.koid
            o.refs = so.refs
            o.serial = so.serial
            if so.type != OBJ_VMO:
                continue
            v = <vm_object *>o
            v.size = so.size
            v.parent_offset = so.parent_offset
            v.parent = <vm_object *>target[so.parent] if so.parent >= 0 else NULL
            v.alive = True
        # The handle table.
        for k in range(s.nslots):
            ks.handles.rights[k] = s.rights[k]
            ks.handles.gen[k] = s.gen[k]
            ks.handles.objs[k] = target[s.slot_objs[k]] if s.slot_objs[k] >= 0 else NULL
        for k in range(s.nslots, ks.handles.nslots):
            ks.handles.objs[k] = NULL
        memcpy(ks.handles.free_slots, s.free_slots, s.nfree_slots * sizeof(uint32_t))
        ks.handles.nslots = s.nslots
        ks.handles.nfree = s.nfree_slots
        ks.handles.count = s.nhandles
        ks.next_koid = s.next_koid
        ks.nvmos = s.nvmos
        # The frames, then the allocator's counters.
        _apply_frames(p, s.store)
        p.next_fresh = s.next_fresh
        p.held_above = s.held_above
        p.nfree = s.nfree
        p.head = s.head
        p.list_len = s.list_len
        p.npinned = s.npinned
        p.released_runs = s.released_runs
        p.zeroed_frames = s.zeroed_frames
    finally:
        free(live)
        free(target)
        free(picks)
        free(by_serial)
    return 0


# -- dropping -------------------------------------------------------------------------------

cdef void _free_store(snap_store *st) noexcept nogil:
    cdef uint64_t i
    for i in range(st.nbytes):
        free(st.bytes[i].data)
    for i in range(st.nleaves):
        free((<snap_leaf *>st.leaves)[i].data)
    free(st.bytes)
    free(st.entries)
    free(st.logged)
    free(st.leaves)
    free(st.leafset)
    free(st)


cdef bint _reserve(void **arr, uint64_t *cap, uint64_t need, size_t elem) noexcept nogil:
    """Capacity for `need` elements in a growable array; False if the host refuses."""
    cdef uint64_t newcap = cap[0]
    cdef void *grown
    if need <= newcap:
        return True
    while newcap < need:
        newcap = newcap * 2 if newcap else 64
    if newcap > (<uint64_t>-1) // elem // 2:
        return False
    grown = realloc(arr[0], newcap * elem)
    if grown == NULL:
        return False
    arr[0] = grown
    cap[0] = newcap
    return True


cdef inline void _append(void *dst, uint64_t *n, const void *src, uint64_t m,
                         size_t elem) noexcept nogil:
    memcpy(<uint8_t *>dst + n[0] * elem, src, m * elem)
    n[0] += m


cdef void _drop(frame_pool *p, snap_store *st) noexcept nogil:
    """A snapshot goes: its pre-images move to the previous live snapshot's store (after
    that one's own, which stay the earliest), or are freed if it was the oldest."""
    cdef snap_store *older = st.older
    cdef snap_store *newer = st.newer
    if older != NULL:
        if not (_reserve(<void **>&older.bytes, &older.capbytes, older.nbytes + st.nbytes,
                         sizeof(snap_bytes))
                and _reserve(<void **>&older.entries, &older.capentries,
                             older.nentries + st.nentries, sizeof(snap_entry))
                and _reserve(<void **>&older.logged, &older.caplogged,
                             older.nlogged + st.nlogged, sizeof(uint32_t))
                and _reserve(&older.leaves, &older.capleaves, older.nleaves + st.nleaves,
                             sizeof(snap_leaf))):
            older.lost = True
            _free_store(st)
        else:
            # The pre-images (and the memory they point to) now belong to `older`.
            _append(older.bytes, &older.nbytes, st.bytes, st.nbytes, sizeof(snap_bytes))
            _append(older.entries, &older.nentries, st.entries, st.nentries,
                    sizeof(snap_entry))
            _append(older.logged, &older.nlogged, st.logged, st.nlogged, sizeof(uint32_t))
            _append(older.leaves, &older.nleaves, st.leaves, st.nleaves, sizeof(snap_leaf))
            older.lost = older.lost or st.lost or not snap_leafset_rebuild(older)
            free(st.bytes)
            free(st.entries)
            free(st.logged)
            free(st.leaves)
            free(st.leafset)
            free(st)
        older.newer = newer
    else:
        _free_store(st)
    if newer != NULL:
        newer.older = older
    else:
        p.snap = older
        p.snap_epoch = older.epoch if older != NULL else 0


@cython.no_gc_clear
cdef class Snapshot:
    """The state of a kernel at one moment (`Kernel.snapshot()`), for `Kernel.restore`.
    Opaque; it keeps its kernel alive. Dropping it (its last reference going) frees its
    pre-images or hands them to the previous live snapshot."""

    def __init__(self, *args, **kwargs):
        raise TypeError("a Snapshot is made by Kernel.snapshot()")

    def __dealloc__(self):
        cdef kernel_state *ks = self.ks
        if self.store != NULL:
            if ks != NULL and not ks.closed:
                ks_wait_idle(ks)
            if ks != NULL and not ks.closed:
                _drop(&ks.pool, self.store)
            else:
                _free_store(self.store)     # the kernel's pool is gone: just the memory
            self.store = NULL
        free(self.objs)
        free(self.rights)
        free(self.gen)
        free(self.slot_objs)
        free(self.free_slots)

    @property
    def kernel(self):
        """The kernel this snapshot was taken of."""
        return self.kernel

    @property
    def _preimages(self):
        """Test shim: the pre-images in this snapshot's own store, as (frames' bytes,
        allocator entries, page-table leaves)."""
        if self.store == NULL:
            return (0, 0, 0)
        return (self.store.nbytes, self.store.nentries, self.store.nleaves)

    def __repr__(self):
        return "<vmo.Snapshot of %d objects, %d handles, epoch %d>" % (
            self.nobjs, self.nhandles, self.store.epoch if self.store != NULL else 0)


# -- the dirty log --------------------------------------------------------------------------

cdef int _cmp_u32(const void *a, const void *b) noexcept nogil:
    cdef uint32_t x = (<uint32_t *>a)[0], y = (<uint32_t *>b)[0]
    return (x > y) - (x < y)


cdef bint _sort_frames(uint32_t *a, uint64_t n) noexcept nogil:
    """Sort frame numbers ascending: insertion sort when few, else an LSD radix sort (four
    passes of 8 bits, skipping the passes whose digit is the same everywhere): O(n). False
    if the host refuses the scratch buffer (nothing moved)."""
    cdef uint64_t i, j, counts[256]
    cdef uint64_t total, c
    cdef uint32_t x, shift, diff = 0
    cdef uint32_t *src
    cdef uint32_t *dst
    cdef uint32_t *tmp
    if n < 64:
        for i in range(1, n):
            x = a[i]
            j = i
            while j > 0 and a[j - 1] > x:
                a[j] = a[j - 1]
                j -= 1
            a[j] = x
        return True
    for i in range(n):
        diff |= a[i] ^ a[0]
    tmp = <uint32_t *>malloc(n * sizeof(uint32_t))
    if tmp == NULL:
        return False
    src = a
    dst = tmp
    for shift in range(0, 32, 8):
        if not (diff >> shift) & 0xFF:
            continue
        memset(counts, 0, sizeof(counts))
        for i in range(n):
            counts[(src[i] >> shift) & 0xFF] += 1
        total = 0
        for i in range(256):
            c = counts[i]
            counts[i] = total
            total += c
        for i in range(n):
            x = src[i]
            dst[counts[(x >> shift) & 0xFF]] = x
            counts[(x >> shift) & 0xFF] += 1
        src, dst = dst, src
    if src != a:
        memcpy(a, src, n * sizeof(uint32_t))
    free(tmp)
    return True


cdef int _cmp_u64(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<uint64_t *>a)[0], y = (<uint64_t *>b)[0]
    return (x > y) - (x < y)


cdef void _log_clear(frame_pool *p) noexcept nogil:
    """Empty the log but for the pinned frames (always in it). O(frames logged)."""
    cdef uint64_t i, kept = 0
    cdef uint32_t f
    for i in range(p.nlog):
        f = p.log[i]
        if p.pincount[f]:
            p.log[kept] = f
            kept += 1
        else:
            bit_clear(p.logged, f)
    p.nlog = kept


cdef int dirty_log_copy(kernel_state *ks, uint64_t *out, uint64_t max_entries, bint clear,
                        uint64_t *count) noexcept nogil:
    """The dirty log's physical addresses, ascending, into out[0:count]; then clear it if
    `clear`. ERR_BUFFER_TOO_SMALL (count = entries needed, nothing written or cleared) if
    it holds more than `max_entries`. O(k log k) for k frames logged."""
    cdef frame_pool *p = &ks.pool
    cdef uint64_t i
    count[0] = p.nlog
    if p.nlog > max_entries:
        return ERR_BUFFER_TOO_SMALL
    if not _sort_frames(p.log, p.nlog):
        qsort(p.log, p.nlog, sizeof(uint32_t), _cmp_u32)   # no room for the radix sort
    for i in range(p.nlog):
        out[i] = pool_paddr(p, p.log[i])
    if p.narenas > 1:
        # Frames follow the memory map's order, which need not be the addresses'.
        qsort(out, p.nlog, sizeof(uint64_t), _cmp_u64)
    if clear:
        _log_clear(p)
    return NO_ERROR


cdef object dirty_log_read(kernel_state *ks, bint clear):
    """k.dirty_log(clear): array('Q') of the logged frames' physical addresses, ascending.
    The caller checked the kernel open and idle."""
    cdef c_array out
    cdef uint64_t count = ks.pool.nlog
    while True:
        out = array("Q", bytes(8 * count))
        # Making the array may have run other threads: wait for any owner again.
        ks_wait_idle(ks)
        if ks.closed:
            raise ValueError("kernel is closed")
        if dirty_log_copy(ks, <uint64_t *>out.data.as_voidptr, count, clear,
                          &count) == NO_ERROR:
            break
    if <uint64_t>len(out) != count:
        del out[count:]
    return out
