"""The C constants of vmo/_status.pxd equal the Python ones (`vmo.errors.Status`,
`vmo.constants`): the compiled core exports them as `vmo._kernel._C_CONSTANTS`."""

import vmo._kernel
from vmo import constants
from vmo.constants import Op, Rights
from vmo.errors import Status

C = vmo._kernel._C_CONSTANTS


def test_every_status_has_its_c_value():
    for name, member in Status.__members__.items():
        assert C[name] == int(member), name


def test_ops_and_rights():
    for name, op in Op.__members__.items():
        assert C["MX_VMO_OP_" + name] == int(op), name
    for name, right in Rights.__members__.items():
        assert C["MX_RIGHT_" + name] == int(right), name
    assert C["MX_RIGHT_SAME_RIGHTS"] == 1 << 31


def test_the_other_constants():
    names = [n for n in constants.__all__ if isinstance(getattr(constants, n), int)
             and not n.startswith(("MX_VMO_OP_", "MX_RIGHT_", "ERR_", "NO_ERROR"))]
    assert "MX_VMO_MAX_SIZE" in names and "PAGE_SIZE" in names and "MX_MAX_HANDLES" in names
    for name in names:
        assert C[name] == getattr(constants, name), name
    assert C["PAGE_MASK"] == constants.PAGE_SIZE - 1
    assert C["U64_MAX"] == (1 << 64) - 1


def test_no_c_constant_without_a_python_twin():
    python = dict(Status.__members__)
    python.update({"MX_VMO_OP_" + n: v for n, v in Op.__members__.items()})
    python.update({"MX_RIGHT_" + n: v for n, v in Rights.__members__.items()})
    python.update({n: getattr(constants, n) for n in constants.__all__})
    python.update(PAGE_MASK=constants.PAGE_SIZE - 1, U64_MAX=(1 << 64) - 1)
    assert not set(C) - set(python), set(C) - set(python)
    for name, value in C.items():
        if name in python:
            assert value == int(python[name]), name
