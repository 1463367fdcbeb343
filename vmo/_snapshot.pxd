# Snapshots of a whole kernel and their restore, and the dirty log's reading
# (docs/semantics.md "Snapshots" and "The dirty log"). The pre-images are saved by the layers
# that change the state (_frames.pyx: a frame's bytes and allocator entry, and the frames
# logged; _pagetable.pyx: a page-table leaf), into the latest live snapshot's `snap_store`
# (_frames.pxd); this module takes snapshots (objects, handle table and counters copied
# whole: O(objects + handles)), restores them (O(pre-images + objects + handles)) and drops
# them (a store merges into the previous live snapshot's).
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t

from vmo._frames cimport snap_store
from vmo._state cimport kernel_state


cdef struct snap_obj:
    # An object as it was: its header, and for a VMO its size and parent (an index into
    # the snapshot's objects, -1 for none). Its page table is the live one's, unless a
    # store from this snapshot on holds a pre-image for its serial.
    uint32_t type
    uint64_t koid
    Py_ssize_t refs
    uint64_t serial
    uint64_t size
    uint64_t parent_offset
    int64_t parent


cdef class Snapshot:
    cdef object kernel              # the kernel it belongs to (kept alive by it)
    cdef kernel_state *ks
    cdef snap_store *store          # its pre-images (linked into the kernel's live list)
    cdef snap_obj *objs
    cdef Py_ssize_t nobjs
    # the handle table: per slot rights, generation and object (index, -1 when free)
    cdef uint32_t *rights
    cdef uint16_t *gen
    cdef int64_t *slot_objs
    cdef uint32_t *free_slots
    cdef uint32_t nslots
    cdef uint32_t nfree_slots
    cdef uint32_t nhandles
    cdef uint64_t next_koid
    cdef Py_ssize_t nvmos
    # the allocator's counters and list head
    cdef uint64_t next_fresh
    cdef uint64_t held_above
    cdef uint64_t nfree
    cdef uint32_t head
    cdef uint64_t list_len
    cdef uint64_t npinned
    cdef uint64_t released_runs
    cdef uint64_t zeroed_frames


cdef Snapshot snap_take(kernel_state *ks, object kernel)
cdef int snap_restore(kernel_state *ks, object kernel, Snapshot s) except -1
cdef object dirty_log_read(kernel_state *ks, bint clear)
cdef int dirty_log_copy(kernel_state *ks, uint64_t *out, uint64_t max_entries, bint clear,
                        uint64_t *count) noexcept nogil
