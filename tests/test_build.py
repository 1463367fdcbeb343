"""The build under test is the one CI meant to test (.ci/run sets the expectations).

VMO_EXPECT_INSTALLED=1: `vmo` is imported from the installed package (site-packages), not
from the source tree. VMO_EXPECT_DEBUG=1: the compiled core is the VMO_DEBUG=1 build, with
Cython's checks and C asserts on.
"""

import os

import pytest

import vmo
import vmo._kernel


@pytest.mark.skipif(not os.environ.get("VMO_EXPECT_INSTALLED"), reason="not asked to check")
def test_installed_package_is_under_test():
    assert "site-packages" in vmo._kernel.__file__, vmo._kernel.__file__
    assert "site-packages" in vmo.__file__, vmo.__file__


@pytest.mark.skipif(not os.environ.get("VMO_EXPECT_DEBUG"), reason="not asked to check")
def test_debug_build_is_under_test():
    assert vmo._kernel.BUILD == {"debug": True, "asan": False, "c_asserts": True}


def test_build_info_is_reported():
    assert set(vmo._kernel.BUILD) == {"debug", "asan", "c_asserts"}
    assert all(isinstance(v, bool) for v in vmo._kernel.BUILD.values())
