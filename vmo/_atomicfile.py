"""Writing a file atomically, shared by both kernels' `save` (docs/state-format.md).

The bytes go to a temporary file in the destination's directory, which is flushed, synced
and then renamed over the destination, and the directory is synced: a crash at any point
leaves either the previous file or the new one, never a mix.
"""

import os
import tempfile

__all__ = ["atomic_write"]

#: Bytes of buffering in front of the temporary file: small writes (headers) are gathered,
#: larger ones (frame contents, a chunk at a time) go straight through without a copy.
BUFFER_SIZE = 1 << 16


def atomic_write(path, write):
    """Call ``write(file)`` with a binary file open for writing, then put what it wrote at
    ``path`` atomically. The new file keeps the mode of the one it replaces (0644 for a new
    one). Any exception from ``write`` or the file system removes the
    temporary file and propagates; ``path`` is then untouched. Cost: the bytes written, one
    fsync of the file and one of its directory."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    fd, temporary = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                                     suffix=".tmp")
    try:
        with os.fdopen(fd, "wb", buffering=BUFFER_SIZE) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp made it 0600; reading the umask would race with other threads.
        os.chmod(temporary, 0o644 if mode is None else mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _sync_directory(directory)


def _sync_directory(directory):
    """Make the rename durable (POSIX: fsync of the directory); skipped where a directory
    cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
