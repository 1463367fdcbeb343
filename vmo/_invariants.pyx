"""The invariant walker (`check`) and the test shims that list a VMO's pages and the
allocator's state (docs/semantics.md; compared with the reference model by the tests).

The walker reads the C structs (objects, page tables, the frame pool) and builds Python
containers of its findings; objects are identified by their address. The syscall layer
holds the kernel (busy, docs/semantics.md "Threads") while it runs, so no other thread
changes the state under it.
"""

from libc.stdint cimport uint32_t, uint64_t, uintptr_t

from vmo._cache cimport cache_check
from vmo._frames cimport NIL, bit_test, frame_pool, pool_list, pool_paddr
from vmo._object cimport OBJ_EVENT, OBJ_VMO, obj_header
from vmo._pagetable cimport pt_check, pt_next
from vmo._state cimport notify_state, watch_entry
from vmo._status cimport PAGE_LIMIT, PAGE_MASK, PAGE_SHIFT


cdef dict _frames_of(const vm_object *v):
    """{page index: frame} of the pages v itself holds."""
    cdef uint64_t idx = 0, found = 0
    cdef uint32_t e = 0
    frames = {}
    while pt_next(&v.pt, idx, PAGE_LIMIT, &found, &e):
        frames[found] = e - 1
        idx = found + 1
    return frames


cdef dict vmo_pages(kernel_state *ks, const vm_object *v):
    """{page index: paddr} of the pages v itself holds."""
    return {idx: pool_paddr(&ks.pool, f) for idx, f in _frames_of(v).items()}


cdef tuple allocator_state(kernel_state *ks):
    """(next fresh frame, [freed frames, bottom of the LIFO list first])."""
    return (ks.pool.next_fresh, pool_list(&ks.pool))


_CACHE_BROKEN = ("", "line count over capacity", "line table count", "LRU list",
                 "line table entry", "line of a frame not held", "dirty count",
                 "per-frame counts")


cdef inline uint64_t _pages_up(uint64_t nbytes) noexcept:
    return (nbytes >> PAGE_SHIFT) + ((nbytes & PAGE_MASK) != 0)


_PT_PROBLEMS = ("", "a node's count is not its slots'", "an empty node in the tree",
                "a leaf's epoch beyond every snapshot's",
                "a leaf marked saved has no pre-image in the latest snapshot's store")


cdef bint check(kernel_state *ks) except 0:
    """Walk every structure and raise AssertionError on the first inconsistency: a frame
    both free and held, held twice, lost or beyond memory; bitmaps, summaries and counts
    that disagree; reference counts that do not match handles + children; pins."""
    cdef uint64_t i, w, f, nwords, word
    cdef uint32_t s
    cdef uintptr_t addr
    cdef obj_header *p
    cdef vm_object *v
    cdef frame_pool *pool = &ks.pool
    cdef uint64_t where = 0
    cdef int bad
    nwords = (pool.nframes + 63) >> 6
    assert pool.next_fresh <= pool.nframes, "fresh mark beyond memory"
    # Handle and child references of every object reachable from the table, by address.
    refs = {}
    roots = []
    for s in range(ks.handles.nslots):
        p = ks.handles.objs[s]
        if p != NULL:
            assert p.type == OBJ_VMO or p.type == OBJ_EVENT, "handle slot %d: bad object type" % s
            roots.append(<uintptr_t>p)
    for addr in roots:
        refs[addr] = refs.get(addr, 0) + 1
    seen = {}       # address -> is a VMO
    for addr in roots:
        while addr != 0 and addr not in seen:
            p = <obj_header *>addr
            seen[addr] = p.type == OBJ_VMO
            addr = <uintptr_t>(<vm_object *>p).parent if p.type == OBJ_VMO else 0
    for addr, is_vmo in seen.items():
        v = <vm_object *>addr
        if is_vmo and v.parent != NULL:
            refs[<uintptr_t>v.parent] = refs.get(<uintptr_t>v.parent, 0) + 1
    assert len(roots) == ks.handles.count, "handle count %d != %d" % (
        len(roots), ks.handles.count)
    nvmos = 0
    held = set()
    for addr, is_vmo in seen.items():
        p = <obj_header *>addr
        if not is_vmo:
            assert p.refs == refs[addr], "event koid %d refs %d != %d" % (
                p.koid, p.refs, refs[addr])
            continue
        v = <vm_object *>addr
        nvmos += 1
        assert v.alive, "dead VMO reachable"
        assert v.hdr.refs == refs[addr], "VMO koid %d refs %d != %d" % (
            v.hdr.koid, v.hdr.refs, refs[addr])
        bad = pt_check(&v.pt, pool, v.hdr.serial, &where)
        assert bad == 0, "VMO koid %d page table near page %d: %s" % (
            v.hdr.koid, where, _PT_PROBLEMS[bad])
        frames = _frames_of(v)
        assert <uint64_t>len(frames) == v.pt.npages, "VMO koid %d page count" % v.hdr.koid
        for idx, f in frames.items():
            assert idx < _pages_up(v.size), "page %d beyond size of koid %d" % (
                idx, v.hdr.koid)
            assert f < pool.nframes, "frame %d beyond memory" % f
            assert f not in held, "frame %d held twice" % f
            assert bit_test(pool.held, f), "frame %d held but not marked" % f
            assert not bit_test(pool.orphan, f), "frame %d held and orphaned" % f
            held.add(f)
    assert nvmos == ks.nvmos, "vmo count %d != %d" % (nvmos, ks.nvmos)
    free = []
    f = pool.head
    while f != NIL:
        free.append(f)
        assert <uint64_t>len(free) <= pool.list_len, "freed list longer than its count"
        f = pool.lnext[f]
    assert <uint64_t>len(free) == pool.list_len, "freed list length"
    assert len(set(free)) == len(free), "a frame freed twice"
    for f in free:
        assert f < pool.next_fresh, "freed frame %d at or above the fresh mark" % f
        assert f not in held, "frame %d both free and held" % f
        assert not bit_test(pool.held, f), "free frame %d marked held" % f
    orphans = 0
    above = 0
    nheld = 0
    for w in range(nwords):
        word = pool.held[w]
        if word:
            for i in range(64):
                f = (w << 6) + i
                if f >= pool.nframes or not (word >> i) & 1:
                    continue
                nheld += 1
                if f >= pool.next_fresh:
                    above += 1
                if bit_test(pool.orphan, f):
                    orphans += 1
                    assert pool.pincount[f], "orphan frame %d has no pin" % f
                else:
                    assert f in held, "frame %d marked held by nothing" % f
        assert bit_test(pool.anyheld, w) == (word != 0), "anyheld summary of word %d" % w
        assert bit_test(pool.fullheld, w) == (word == <uint64_t>0xFFFFFFFFFFFFFFFFULL), (
            "fullheld summary of word %d" % w)
    assert nheld == len(held) + orphans, "held bitmap %d != %d + %d orphans" % (
        nheld, len(held), orphans)
    assert above == pool.held_above, "held above the mark %d != %d" % (above, pool.held_above)
    assert pool.nfree == (pool.nframes - pool.next_fresh - pool.held_above) + pool.list_len, (
        "free count %d" % pool.nfree)
    assert pool.nfree + nheld == pool.nframes, "frames lost"
    pinned = pool.npinned
    if pool.nframes <= 1 << 20:
        pinned = 0
        for f in range(pool.nframes):
            if pool.pincount[f]:
                pinned += 1
    assert pinned == pool.npinned, "pinned count %d != %d" % (pinned, pool.npinned)
    if ks.cache != NULL:
        broken = cache_check(ks.cache, pool)
        assert broken == 0, "cache: " + _CACHE_BROKEN[broken]
    _check_notify(ks, seen)
    return True


cdef int _check_notify(kernel_state *ks, dict seen) except -1:
    """The change subscriptions: sorted by (koid, id), ids below the next one, each one of a
    live (reachable) VMO with that koid, or of a destroyed one (NULL) whose destruction event
    is pending; no event pending outside a delivery (every call delivers its own)."""
    cdef notify_state *ns = ks.notify
    cdef uint64_t i
    cdef const watch_entry *e
    if ns == NULL:
        return 0
    assert ns.head <= ns.nevents, "event head past the queue"
    if not ns.delivering:
        assert ns.nevents == 0, "%d change events left undelivered" % ns.nevents
    pending = {ns.events[i].koid for i in range(ns.head, ns.nevents) if ns.events[i].destroyed}
    for i in range(ns.nentries):
        e = &ns.entries[i]
        assert 0 < e.id < ns.next_id, "subscription id %d" % e.id
        if i:
            assert (ns.entries[i - 1].koid, ns.entries[i - 1].id) < (e.koid, e.id), (
                "subscriptions out of order at %d" % i)
        if e.obj == NULL:
            assert e.koid in pending, "subscription %d of a destroyed VMO" % e.id
        else:
            assert seen.get(<uintptr_t>e.obj), "subscription %d to a dead VMO" % e.id
            assert (<vm_object *>e.obj).hdr.koid == e.koid, "subscription %d koid" % e.id
        assert e.py or e.fn != NULL, "subscription %d has no callback" % e.id
    return 0
