# vmo's public Cython API: ``from vmo.api cimport Kernel, NO_ERROR, ERR_NO_MEMORY, ...``
#
# What it gives: `Kernel` (the syscall layer, cimported from vmo._kernel; its c_* methods are
# declared by its base, `KernelCore`, in vmo/_kernelcore.pxd), the C struct
# `handle_basic_info`, and every constant of vmo/_status.pxd: the statuses (NO_ERROR,
# ERR_*), the ops (MX_VMO_OP_*), the rights (MX_RIGHT_*, MX_DEFAULT_*_RIGHTS), clone, info
# and object-type values (MX_VMO_CLONE_COPY_ON_WRITE, MX_INFO_*, MX_OBJ_*), MX_HANDLE_INVALID,
# MX_MAX_HANDLES, PAGE_SHIFT, PAGE_SIZE, PAGE_MASK, MX_VMO_MAX_SIZE and U64_MAX. The names
# and values are those of `vmo.errors.Status` and `vmo.constants`. This file is declarations
# only, and there is no runtime module `vmo.api`: an extension that cimports it imports
# `vmo._kernel` and `vmo._kernelcore` (for the Kernel type and its base) and `vmo._frames`
# (C functions behind inline helpers) at run time, never `vmo.api`
# (tests/test_cython_public_api.py builds one).
#
# The contract of every c_* method (docs/api.md): the same semantics as the Python syscall
# it twins, with C arguments: the same checks in the same order (docs/magenta.md), the same
# statuses, handle values, koids and physical addresses. Each returns a status, 0 (NO_ERROR)
# or a negative Magenta error, and writes its outputs through the pointers given (a handle
# output is MX_HANDLE_INVALID and a size, count or `actual` output 0 when it fails; a
# get_size output is left untouched). It raises a Python exception only for a closed kernel
# (ValueError: "any call after close raises ValueError") or a host failure (MemoryError):
# the methods are declared ``except -1000`` so Cython propagates them. No Python object is
# created on the way, except the objects a creating call makes. Buffers are the caller's:
# `dst`/`src` hold at least `length` bytes, LOOKUP's `out` at least `max_entries` entries.
# Call them with the GIL held. A long one (more than 256 pages or 64 KiB: docs/semantics.md
# "Threads") releases the GIL while it works, so the caller's buffers must stay valid (and
# not be changed by another thread) until it returns; a call on a kernel another thread is
# working on waits for it.
#
#   c_create(size, options, &handle)             vmo_create: ERR_INVALID_ARGS (options != 0),
#                                                ERR_NO_MEMORY (size > MX_VMO_MAX_SIZE, table
#                                                full)
#   c_create_contiguous(size, alignment_log2, &handle)
#                                                vmo_create_contiguous: ERR_INVALID_ARGS
#                                                (size 0, alignment not 0 and < 12, or >= 64),
#                                                ERR_NO_MEMORY (no run, too big, table full)
#   c_get_size(handle, &size)                    ERR_BAD_HANDLE, ERR_WRONG_TYPE
#   c_set_size(handle, size)                     ERR_BAD_HANDLE, ERR_ACCESS_DENIED (no WRITE),
#                                                ERR_WRONG_TYPE, ERR_OUT_OF_RANGE
#   c_read(handle, dst, offset, length, &actual) ERR_BAD_HANDLE, ERR_ACCESS_DENIED (no READ),
#                                                ERR_WRONG_TYPE, ERR_OUT_OF_RANGE; writes only
#                                                `actual` bytes (trimmed to the VMO) to dst
#   c_write(handle, src, offset, length, &actual)
#                                                as c_read with WRITE, plus ERR_NO_MEMORY
#                                                (pages written before it stay)
#   c_op_range(handle, op, offset, size, buffer, buffer_size)
#                                                vmo_op_range: ERR_BAD_HANDLE, ERR_WRONG_TYPE,
#                                                ERR_INVALID_ARGS, ERR_NOT_SUPPORTED,
#                                                ERR_BUFFER_TOO_SMALL, ERR_OUT_OF_RANGE,
#                                                ERR_NO_MEMORY; `buffer` may be NULL (LOOKUP
#                                                then returns ERR_INVALID_ARGS)
#   c_commit(handle, offset, size)               c_op_range with MX_VMO_OP_COMMIT
#   c_decommit(handle, offset, size)             c_op_range with MX_VMO_OP_DECOMMIT
#   c_lookup(handle, offset, size, out, max_entries)
#                                                c_op_range with MX_VMO_OP_LOOKUP: physical
#                                                addresses (uint64) into out[0:pages]
#   c_clone(handle, options, offset, size, &handle_out)
#                                                vmo_clone: ERR_BAD_HANDLE, ERR_ACCESS_DENIED
#                                                (needs DUPLICATE and READ), ERR_WRONG_TYPE,
#                                                ERR_INVALID_ARGS, ERR_OUT_OF_RANGE,
#                                                ERR_NO_MEMORY (table full)
#   c_committed_bytes(handle, &bytes)            ERR_BAD_HANDLE, ERR_WRONG_TYPE
#   c_handle_close(handle)                       ERR_BAD_HANDLE
#   c_handle_duplicate(handle, rights, &handle_out)
#                                                ERR_BAD_HANDLE, ERR_ACCESS_DENIED (no
#                                                DUPLICATE), ERR_INVALID_ARGS, ERR_NO_MEMORY
#   c_handle_replace(handle, rights, &handle_out)
#                                                ERR_BAD_HANDLE, ERR_INVALID_ARGS (the old
#                                                handle then stays valid)
#   c_get_info(handle, topic, &info)             object_get_info: ERR_NOT_SUPPORTED (topic 0
#                                                or > 13), ERR_BAD_HANDLE, ERR_WRONG_TYPE
#                                                (topics 3-13); MX_INFO_HANDLE_BASIC fills
#                                                `info`, MX_INFO_HANDLE_VALID leaves it
#   c_event_create(options, &handle)             ERR_INVALID_ARGS, ERR_NO_MEMORY
#   c_phys_read(paddr, dst, length)              device read: ERR_OUT_OF_RANGE (not inside
#                                                one RAM range), ERR_BAD_STATE (a page not
#                                                held by a VMO)
#   c_phys_write(paddr, src, length)             device write: as c_phys_read
#   c_dirty_log(out, max_entries, clear, &count) the dirty log (docs/semantics.md): its
#                                                physical addresses, ascending, into
#                                                out[0:count], then cleared if `clear`;
#                                                ERR_BUFFER_TOO_SMALL (count = entries
#                                                needed; nothing written or cleared)
#
# Machine services (docs/api.md "Machine services"):
#   c_pin(paddr, length, &host)                  pin the frames of a physical range (as
#                                                Kernel.pin, without the Python object):
#                                                ERR_OUT_OF_RANGE, ERR_BAD_STATE (a page not
#                                                held by a VMO), ERR_NOT_SUPPORTED while the
#                                                kernel records (a C-level pin has no trace
#                                                record: use Kernel.pin); `host` is the host
#                                                address of the byte at paddr (NULL for length
#                                                0), valid until the matching c_unpin
#   c_unpin(paddr, length)                       one pin of each frame of the range goes (a
#                                                frame its VMO let go of is freed with its last
#                                                pin): ERR_OUT_OF_RANGE, ERR_BAD_STATE (a frame
#                                                not pinned: nothing changes),
#                                                ERR_NOT_SUPPORTED while recording. Give it the
#                                                range of an earlier c_pin: the kernel cannot
#                                                tell whose pin it drops
#   c_host_address(paddr, length, &host)         the host address of the byte at paddr after
#                                                phys_read's checks (ERR_OUT_OF_RANGE,
#                                                ERR_BAD_STATE), NULL for length 0; valid while
#                                                the frames stay held (pin them to be sure)
#   c_lookup_runs(handle, offset, size, out, max_runs, &count)
#                                                Vmo.lookup_runs into `out` (vmo_run: offset,
#                                                paddr, length, own): ERR_BAD_HANDLE,
#                                                ERR_WRONG_TYPE, ERR_INVALID_ARGS (size 0),
#                                                ERR_OUT_OF_RANGE; `count` is the number of
#                                                runs (0 on failure); more than `max_runs`:
#                                                ERR_BUFFER_TOO_SMALL with the first max_runs
#                                                written
#   c_on_change(handle, fn, ctx, &subscription)  Vmo.on_change with a C function:
#                                                fn(ctx, offset, length) (change_fn, noexcept,
#                                                called with the GIL held after the call that
#                                                caused it): ERR_BAD_HANDLE, ERR_WRONG_TYPE
#   c_cancel_change(subscription)                end it: ERR_NOT_FOUND if it is not active
# The c_* calls that can change pages (c_write, c_op_range, c_commit, c_decommit,
# c_set_size, c_handle_close) deliver their change events before they return; an exception
# raised by a Python callback (Vmo.on_change) is raised from them then, after every other
# callback ran.
from vmo._kernel cimport Kernel, handle_basic_info
from vmo._state cimport change_fn
from vmo._status cimport *
from vmo._vmobject cimport vmo_run
