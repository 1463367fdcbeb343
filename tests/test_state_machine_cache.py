"""Differential state machine of the cache model (docs/cache-model.md): every rule of
``test_state_machine.py``'s `VmoStateMachine` on non-coherent kernels (line sizes 16 to 4096,
unbounded or a capacity of a few lines, so that eviction happens), plus devices reading and
writing committed pages through ``phys_read``/``phys_write`` and physical views, and the
four cache ops, between the CPU calls. After every step both kernels must agree on every
call's outcome, the bytes on the CPU side (``vmo_read_bytes``) and the RAM side (a
``phys_read`` of every page of every small VMO), ``stats()`` (``cache_lines`` and
``dirty_lines`` included), every coherency event (kind, address, VMO, offset, call number)
and both ``_check()`` walkers (the cache's invariants included).
"""

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule
from test_state_machine import PAGE, SM_SETTINGS, Pair, VmoStateMachine

import vmo

S = vmo.Status
CACHE_OPS = (vmo.MX_VMO_OP_CACHE_SYNC, vmo.MX_VMO_OP_CACHE_INVALIDATE,
             vmo.MX_VMO_OP_CACHE_CLEAN, vmo.MX_VMO_OP_CACHE_CLEAN_INVALIDATE)


class CacheStateMachine(VmoStateMachine):
    """VmoStateMachine on non-coherent kernels, with device accesses and cache ops."""

    @initialize(target=VmoStateMachine.handles,
                pages=st.one_of(st.integers(4, 12), st.integers(4, 64)),
                base_pages=st.sampled_from([0x100, 1]),
                cache_line=st.sampled_from([16, 64, 64, 256, 4096]),
                cache_lines=st.sampled_from([None, None, 1, 3, 8]))
    def make_kernels(self, pages, base_pages, cache_line, cache_lines):
        self.pair = Pair(pages * PAGE, memory_base=base_pages * PAGE, coherent=False,
                         cache_line=cache_line, cache_lines=cache_lines)
        status, h = self.pair.call("vmo_create", 3 * PAGE + 5)
        assert status is S.NO_ERROR
        return self._new(h)

    def _paddr(self, h, page):
        """The physical address of page ``page`` of ``h`` (LOOKUP on the core), or None."""
        k = self.pair.core
        status, size = self.pair.call("vmo_get_size", h)
        if status is not S.NO_ERROR or page * PAGE >= size:
            return None
        before = k.coherency_events(clear=False)
        out = bytearray(8)
        status = k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, page * PAGE, 1, out)
        # The same call on the reference keeps both call counters in step.
        self.pair.ref.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, page * PAGE, 1, bytearray(8))
        assert k.coherency_events(clear=False) == before
        return int.from_bytes(out, "little") if status is S.NO_ERROR else None

    def _device(self, name, *args):
        """A device access on both kernels: the same bytes (or count), or the same error."""
        outcomes = []
        for k in (self.pair.core, self.pair.ref):
            try:
                outcomes.append(("ok", getattr(k, name)(*args)))
            except vmo.MxError as exc:
                outcomes.append(("raise", exc.status))
        assert outcomes[0] == outcomes[1], f"{name}{args}: {outcomes}"

    @rule(h=VmoStateMachine.handles, page=st.integers(0, 3), start=st.integers(0, PAGE - 1),
          n=st.sampled_from([1, 15, 16, 17, 63, 64, 65, 200, PAGE]))
    def device_read(self, h, page, start, n):
        paddr = self._paddr(h, page)
        if paddr is not None:
            self._device("phys_read", paddr + start, min(n, PAGE - start))

    @rule(h=VmoStateMachine.handles, page=st.integers(0, 3), start=st.integers(0, PAGE - 1),
          data=st.binary(min_size=1, max_size=300))
    def device_write(self, h, page, start, data):
        paddr = self._paddr(h, page)
        if paddr is not None:
            self._device("phys_write", paddr + start, data[:PAGE - start])

    @rule(h=VmoStateMachine.handles, page=st.integers(0, 3), start=st.integers(0, PAGE - 1),
          data=st.binary(min_size=1, max_size=100))
    def device_writes_through_view(self, h, page, start, data):
        """A view's writes go to RAM unseen by the kernel: no stale mark, no event."""
        paddr = self._paddr(h, page)
        if paddr is None:
            return
        data = data[:PAGE - start]
        for k in (self.pair.core, self.pair.ref):
            view = k.phys_view(paddr + start, len(data))
            view[:] = data
            view.release()

    @rule(h=VmoStateMachine.handles, op=st.sampled_from(CACHE_OPS),
          offset=st.integers(0, 4 * PAGE), size=st.integers(0, 3 * PAGE))
    def cache_op(self, h, op, offset, size):
        self.pair.call("vmo_op_range", h, op, offset, size)

    @rule()
    def snapshot(self):
        """Snapshots are refused alike on non-coherent kernels (the cache is not saved)."""
        for k in (self.pair.core, self.pair.ref):
            with pytest.raises(ValueError, match="non-coherent"):
                k.snapshot()

    @invariant()
    def same_ram(self):
        """The RAM side: every committed page of every small VMO, as a device reads it."""
        if self.pair is None:
            return
        for h in self.seen:
            for page in range(4):
                paddr = self._paddr(h, page)
                if paddr is not None:
                    self._device("phys_read", paddr, PAGE)


CacheStateMachine.TestCase.settings = SM_SETTINGS
TestCacheStateMachine = CacheStateMachine.TestCase
