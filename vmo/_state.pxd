# The kernel's shared C state, and the protocol that lets one thread own it while it works
# without the GIL. `Kernel` embeds one `kernel_state`, and every layer above the handle
# table takes a `kernel_state *`, so no module below the syscall layer imports the Kernel
# class (layers import downward only).
#
# Threads (docs/semantics.md "Threads"). Every call holds the GIL while it reads or changes
# the state, except a long one, which first owns the kernel:
#   ks_enter(ks)        GIL held: wait until no thread owns the kernel, then own it (busy)
#   with nogil: ...     the work: sys_* / vmo_* / phys_* calls, no Python object
#   ks_leave(ks)        GIL held: give it up and wake the waiters
# Any other call, GIL held, does `if ks.busy: ks_wait(ks)` just before it touches the state
# (one load and a branch) and runs no Python code (no __index__, no buffer export, no
# allocation that can collect garbage) between that check and the end of its work.
# `busy` changes only with the GIL held; `gate` is held by the owner for as long as it is
# busy, so a waiter blocks on it with the GIL released and then looks again.
from cpython.pythread cimport (NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock,
                               PyThread_release_lock, PyThread_type_lock)
from libc.stdint cimport uint64_t

from vmo._cache cimport cpu_cache
from vmo._frames cimport frame_pool
from vmo._handles cimport handle_table

cdef enum:
    FIRST_KOID = 1024       # koids count up from here, one per object created
    # Calls longer than these own the kernel and run without the GIL (docs/semantics.md):
    # LONG_PAGES for the pages of a COMMIT/DECOMMIT/LOOKUP range, of a contiguous VMO, and
    # freed by a shrink or a close; LONG_BYTES for vmo_read/vmo_write/phys_read/phys_write.
    LONG_PAGES = 256
    LONG_BYTES = 65536

# Change notifications (Vmo.on_change, KernelCore.c_on_change; docs/semantics.md "Change
# notifications"). The object layer appends events while a call changes pages (vmo_* in
# _vmobject.pyx, GIL or not); the call's Python method or c_* method delivers them with the
# GIL once it is done (notify_deliver, _kernelcore.pyx). NULL until the first subscription,
# so a kernel without subscribers pays one load and a branch per changing call.
ctypedef void (*change_fn)(void *ctx, uint64_t offset, uint64_t length) noexcept

cdef struct watch_entry:
    uint64_t id             # the subscription's number, from 1, in subscription order
    uint64_t koid           # the VMO watched
    void *obj               # its vm_object; NULL once destroyed (its last event pending)
    change_fn fn
    void *ctx               # fn's argument; a PyObject * (owned reference) when `py`
    bint py

cdef struct change_event:
    uint64_t koid
    uint64_t offset
    uint64_t length
    bint destroyed          # the VMO went: its subscriptions end after this event

cdef struct notify_state:
    watch_entry *entries    # sorted by (koid, id)
    uint64_t nentries
    uint64_t cap_entries
    uint64_t next_id
    change_event *events    # pending, in the order the work met them
    uint64_t nevents
    uint64_t cap_events
    uint64_t head           # next event to deliver
    bint delivering         # a delivery is running (callbacks' own calls do not deliver)
    bint lost               # the host refused to grow `events`: some were lost

cdef struct kernel_state:
    frame_pool pool         # simulated physical memory and its frame allocator
    handle_table handles
    uint64_t next_koid
    uint64_t next_serial    # obj_header.serial of the next object (never rewound)
    Py_ssize_t nvmos        # live VMO objects (handles or clone children keep them alive)
    bint closed             # set by close(): the C-level API then raises ValueError
    bint busy               # a thread owns the kernel (working without the GIL)
    PyThread_type_lock gate  # held by the owner while busy; waiters block on it
    notify_state *notify    # change notifications: NULL while nothing is watched
    cpu_cache *cache        # the CPU data cache (coherent=False), NULL on a coherent kernel
    uint64_t seq            # the call counter: one per kernel call (events carry it)


cdef inline void ks_wait_idle(kernel_state *ks) noexcept:
    """GIL held: return once no thread owns the kernel (it may have been closed meanwhile)."""
    while ks.busy:
        with nogil:
            PyThread_acquire_lock(ks.gate, WAIT_LOCK)
            PyThread_release_lock(ks.gate)


cdef inline int ks_wait(kernel_state *ks) except -1:
    """GIL held, `ks.busy` seen set: wait until the owner is done, then ValueError if it
    closed the kernel meanwhile (docs/api.md: any call after close)."""
    ks_wait_idle(ks)
    if ks.closed:
        raise ValueError("kernel is closed")
    return 0


cdef inline int ks_enter(kernel_state *ks) except -1:
    """GIL held: own the kernel (after any current owner; ValueError if the kernel is
    closed). The caller then works without the GIL and calls ks_leave with the GIL held."""
    if ks.busy:
        ks_wait(ks)
    if ks.closed:
        raise ValueError("kernel is closed")
    ks.busy = True
    # The gate is free unless a waiter is passing through it (it holds it for an instant,
    # without the GIL): wait for that one without the GIL. Nobody else can enter: busy.
    if not PyThread_acquire_lock(ks.gate, NOWAIT_LOCK):
        with nogil:
            PyThread_acquire_lock(ks.gate, WAIT_LOCK)
    return 0


cdef inline void ks_leave(kernel_state *ks) noexcept:
    """GIL held: stop owning the kernel and wake the threads waiting for it."""
    ks.busy = False
    PyThread_release_lock(ks.gate)
