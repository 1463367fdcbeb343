"""Bugs the fuzz harness (tests/test_fuzz.py) found, each as a deterministic test.

A bug still open is marked ``xfail(strict=True)`` with its reason, so that the suite stays
green while it is open and the fix turns the test into an XPASS failure: then drop the marker
(and the bug's key from `OPEN_KNOWN` in tests/test_fuzz.py, which keeps the fuzz run from
failing on a lucky draw of it meanwhile). Fixed bugs keep their test.
"""

import pytest
from conftest import PAGE, make_vmo

import vmo

np = pytest.importorskip("numpy")


@pytest.mark.parametrize("op", [vmo.MX_VMO_OP_COMMIT, vmo.MX_VMO_OP_UNLOCK])
def test_op_range_takes_a_0d_array_op_as_its_int(k, op):
    """docs/semantics.md: integer arguments are converted with operator.index, so a 0-d numpy
    integer array works as the int it indexes to. Found by the metamorphic fuzz
    (test_fuzz_integer_likes_behave_as_their_int): `v.op_range(np.array(op, dtype=np.uint64),
    ...)` raised TypeError("unhashable type: 'numpy.ndarray'"), where `v.op_range(op, ...)`
    returned None (COMMIT) or raised MxError(ERR_NOT_SUPPORTED) (UNLOCK): the op's name for
    the error message was looked up with the op as a dict key, after the call had run. Fixed:
    the name is looked up only on failure, through operator.index, and never raises."""
    outcomes = []
    for given in (op, np.array(op, dtype=np.uint64)):
        v = k.vmo(make_vmo(k, 4 * PAGE))
        try:
            outcome = ("ok", v.op_range(given, 0, 2 * PAGE))
        except vmo.MxError as exc:
            outcome = ("MxError", exc.status)
        except TypeError as exc:
            outcome = ("TypeError", str(exc))
        outcomes.append(outcome + (v.committed_bytes,))
        v.close()
    assert outcomes[1] == outcomes[0]
