"""Magenta status codes and the exception the Pythonic layer raises.

Pure Python, shared by the compiled core and the reference model. Values are the
2017-04-13 renumbering (docs/magenta.md 1.1), the table in force for the whole normative era.
"""

from enum import IntEnum

__all__ = ["Status", "MxError", "status_name"]


class Status(IntEnum):
    """Every status a call can return (docs/magenta.md 1.1)."""

    NO_ERROR = 0
    ERR_INTERNAL = -1
    ERR_NOT_SUPPORTED = -2
    ERR_NO_RESOURCES = -3
    ERR_NO_MEMORY = -4
    ERR_CALL_FAILED = -5
    ERR_INTERRUPTED_RETRY = -6
    ERR_INVALID_ARGS = -10
    ERR_BAD_HANDLE = -11
    ERR_WRONG_TYPE = -12
    ERR_BAD_SYSCALL = -13
    ERR_OUT_OF_RANGE = -14
    ERR_BUFFER_TOO_SMALL = -15
    ERR_BAD_STATE = -20
    ERR_TIMED_OUT = -21
    ERR_SHOULD_WAIT = -22
    ERR_CANCELED = -23
    ERR_HANDLE_CLOSED = -23  # deprecated alias of ERR_CANCELED in the seed era
    ERR_PEER_CLOSED = -24
    ERR_NOT_FOUND = -25
    ERR_ALREADY_EXISTS = -26
    ERR_ALREADY_BOUND = -27
    ERR_UNAVAILABLE = -28
    ERR_ACCESS_DENIED = -30
    ERR_IO = -40
    ERR_IO_REFUSED = -41
    ERR_IO_DATA_INTEGRITY = -42
    ERR_IO_DATA_LOSS = -43
    ERR_BAD_PATH = -50
    ERR_NOT_DIR = -51
    ERR_NOT_FILE = -52
    ERR_FILE_BIG = -53
    ERR_NO_SPACE = -54
    ERR_STOP = -60
    ERR_NEXT = -61

    def __str__(self) -> str:
        return self.name


def status_name(status: int) -> str:
    """The Magenta name of a status value, or ``"UNKNOWN(<value>)"``."""
    try:
        return Status(status).name
    except ValueError:
        return "UNKNOWN(%d)" % status


class MxError(Exception):
    """A call of the Pythonic layer failed; ``.status`` is the :class:`Status`."""

    def __init__(self, status, message=None):
        try:
            status = Status(status)
        except ValueError:
            pass
        self.status = status
        text = status_name(status)
        if message:
            text = "%s: %s" % (text, message)
        super().__init__(text)

    def __reduce__(self):
        return (type(self), (self.status,))
