# The Python-to-C boundary: integer arguments (`arg_u64`, `arg_u32`, inline: they are the
# per-call floor of every syscall), buffer export (`arg_buffer`, `arg_transfer_buffer`) and
# C statuses back to `Status` members (`status_table` + `status_of`).
#
# Argument conversion happens in signature order, every argument before any status: a
# TypeError (or whatever an __index__ raises) always wins over ERR_INVALID_ARGS, and the
# first bad argument in signature order is the one reported. Callers therefore combine the
# out-of-range flags with `|`, which (unlike `or`) converts every argument.
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.list cimport PyList_GET_ITEM
from cpython.number cimport PyNumber_Index
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "Python.h":
    # Declared without an exception spec: the callers test PyErr_Occurred themselves, so an
    # out-of-range integer becomes a status instead of an exception.
    unsigned long long _vmo_as_u64 "PyLong_AsUnsignedLongLong"(object o) noexcept
    bint _vmo_long_exact "PyLong_CheckExact"(object o)


cdef inline int arg_u64(object o, uint64_t *out) except -1:
    """Convert an integer argument: 0 on success, 1 if it is outside uint64 (the caller
    returns ERR_INVALID_ARGS). Raises TypeError for non-integers."""
    cdef unsigned long long v
    if not _vmo_long_exact(o):
        o = PyNumber_Index(o)
    v = _vmo_as_u64(o)
    if v == <unsigned long long>-1 and PyErr_Occurred() != NULL:
        PyErr_Clear()
        return 1
    out[0] = v
    return 0


cdef inline int arg_u32(object o, uint32_t *out) except -1:
    """As arg_u64, for a 32-bit argument (handles, options, ops, rights)."""
    cdef uint64_t v
    if arg_u64(o, &v) or v > 0xFFFFFFFF:
        return 1
    out[0] = <uint32_t>v
    return 0


cdef bint holds_objects(const char *fmt) noexcept
cdef int arg_buffer(object obj, Py_buffer *view, bint writable) except -1
cdef int arg_transfer_buffer(object obj, Py_buffer *view, bint writable, bint default_length,
                             uint64_t *length) except -2
cdef list status_table()


cdef inline object status_of(list table, int code):
    """The `Status` member of a C status, from a status_table(): O(1), no allocation."""
    return <object>PyList_GET_ITEM(table, -code)
