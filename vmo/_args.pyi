"""Type stubs for vmo/_args.pyx: the Python-to-C boundary.

Its interface is C-level (`arg_u64`, `arg_u32`, `arg_buffer`, `arg_transfer_buffer`,
`status_table`, `status_of` in _args.pxd), for cimport by other Cython modules; nothing is
exposed to Python.
"""
