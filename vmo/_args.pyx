"""The Python-to-C boundary (see _args.pxd): buffer export for the syscalls and the table
that turns a C status into its `Status` member."""

from cpython.buffer cimport (PyBUF_FULL, PyBUF_FULL_RO, PyBuffer_IsContiguous,
                             PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer)
from libc.stdint cimport uint64_t

from vmo.errors import Status


cdef bint holds_objects(const char *fmt) noexcept:
    """True if a struct-module buffer format holds Python object pointers ("O"), outside
    the field names that structured formats put between colons ("T{<u8:n:O:o:}")."""
    cdef bint in_name = False
    if fmt == NULL:
        return False
    while fmt[0] != 0:
        if fmt[0] == 58:  # ":"
            in_name = not in_name
        elif fmt[0] == 79 and not in_name:  # "O"
            return True
        fmt += 1
    return False


cdef int arg_buffer(object obj, Py_buffer *view, bint writable) except -1:
    """Export `obj` as a contiguous byte buffer: 0 on success, 1 if the exporter refuses
    (read-only where it is to be written, non-contiguous: the caller returns
    ERR_INVALID_ARGS), or if it holds Python object pointers (format "O", e.g. a numpy
    object array), in either direction: raw bytes written there would crash the
    interpreter, and the pointers read from there are host addresses that must not reach
    simulated memory. TypeError if `obj` has no buffer protocol."""
    if not PyObject_CheckBuffer(obj):
        raise TypeError("a bytes-like object is required, not %r" % type(obj).__name__)
    # Ask for everything (shape, strides, format) as memoryview() does, then accept only a
    # C-contiguous result: both kernels then accept exactly the same exporters.
    try:
        PyObject_GetBuffer(obj, view, PyBUF_FULL if writable else PyBUF_FULL_RO)
    except Exception:
        return 1
    if not PyBuffer_IsContiguous(view, b'C') or holds_objects(view.format):
        PyBuffer_Release(view)
        return 1
    return 0


cdef int arg_transfer_buffer(object obj, Py_buffer *view, bint writable, bint default_length,
                             uint64_t *length) except -2:
    """Export the buffer of a read or write syscall (docs/semantics.md): 1 if a view is held
    (release it), 0 if none is needed (None, or a refused exporter with nothing to
    transfer), -1 for ERR_INVALID_ARGS. Sets `length` to the buffer size when defaulted."""
    cdef Py_buffer probe
    view.buf = NULL
    view.len = 0
    if obj is not None:
        if arg_buffer(obj, view, writable) == 0:
            if default_length:
                length[0] = view.len
            elif length[0] > <uint64_t>view.len:
                PyBuffer_Release(view)
                return -1
            return 1
        # Refused (read-only where written, or not contiguous): only an empty transfer is
        # harmless, as a C call with a bad pointer and length 0 touches nothing.
        if default_length:
            try:
                # Any layout: only the size matters (a strided view of 0 bytes moves nothing).
                PyObject_GetBuffer(obj, &probe, PyBUF_FULL_RO)
            except Exception:
                length[0] = 1
            else:
                length[0] = probe.len
                PyBuffer_Release(&probe)
        view.buf = NULL
        view.len = 0
    elif default_length:
        length[0] = 0
    return -1 if length[0] else 0


cdef list status_table():
    """`Status` members indexed by -value (64 entries, None where no status has that value),
    for status_of()."""
    cdef list table = [None] * 64
    for member in Status:
        table[-int(member)] = member
    return table
