"""Direct tests of the frame pool, driven through the test shim `vmo._frames._FramePoolShim`
(no kernel in between): deterministic order, "a frame handed out reads as zero" through both
ways a written frame is cleaned (zeroed on reuse after a short dirty run, given back to the
host with MADV_DONTNEED after a long one), the held/dirty bitmaps, exhaustion; plus a state
machine checking that a frame whose dirty bit is clear really holds zeros. (The page table's
direct tests are in tests/test_internals.py.)
"""

import random

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vmo._frames import _FramePoolShim

FRAME = 4096
ZERO_FRAME = bytes(FRAME)
RELEASE_MIN = 16           # dirty runs this long go back to the host (_frames.pxd)


def _fill(pool, frames, byte=0xA5):
    for f in frames:
        pool.write(f, 0, bytes([byte]) * FRAME)


def test_pool_fresh_ascending_then_lifo():
    p = _FramePoolShim(8)
    assert (p.free_count, p.next_fresh, p.stack) == (8, 0, [])
    assert [p.take() for _ in range(4)] == [0, 1, 2, 3]
    assert p.next_fresh == 4 and p.free_count == 4
    p.give([2, 0, 3])
    assert p.stack == [2, 0, 3] and p.free_count == 7
    assert p.take() == 3 and p.take() == 0          # LIFO
    p.give_batch([1, 3])
    assert p.stack == [2, 1, 3]
    assert [p.take() for _ in range(3)] == [3, 1, 2]
    assert [p.take() for _ in range(4)] == [4, 5, 6, 7]   # fresh again, ascending
    assert p.take() == -1 and p.free_count == 0       # exhausted
    assert p.take() == -1
    p.give([5])
    assert p.take() == 5 and p.take() == -1


def test_pool_held_and_dirty_bits():
    p = _FramePoolShim(4)
    assert not any(p.held(f) or p.dirty(f) for f in range(6))   # past the end: False too
    f = p.take()
    assert p.held(f) and not p.dirty(f)
    assert p.read(f) == ZERO_FRAME
    p.write(f, 100, b"abc")
    assert p.held(f) and p.dirty(f)
    assert p.read(f)[100:103] == b"abc"
    p.give([f])
    assert not p.held(f) and p.dirty(f)      # a short run stays dirty until reuse
    assert p.take() == f
    assert p.held(f) and not p.dirty(f)
    assert p.read(f) == ZERO_FRAME
    # The shim refuses frames that are not held.
    with pytest.raises(ValueError):
        p.write(3, 0, b"x")                  # never taken
    p.give([f])
    with pytest.raises(ValueError):
        p.give([f])                          # already free
    with pytest.raises(ValueError):
        p.give_batch([f])
    with pytest.raises(ValueError):
        p.write(f, 0, b"x")
    g = p.take()
    with pytest.raises(ValueError):
        p.write(g, 4000, b"x" * 100)         # past the frame
    with pytest.raises(ValueError):
        p.give_batch([g, g])                 # not distinct
    with pytest.raises(ValueError):
        p.give_batch(list(range(513)))
    assert p.held(g)


def test_pool_short_dirty_runs_are_zeroed_on_reuse():
    p = _FramePoolShim(64)
    frames = [p.take() for _ in range(RELEASE_MIN - 1)]
    _fill(p, frames)
    clean = p.take()                         # taken, never written
    p.give_batch(frames)                     # 15 consecutive: too short to release
    p.give([clean])
    assert p.released_runs == 0
    assert all(p.dirty(f) and not p.held(f) for f in frames)
    assert not p.dirty(clean)
    zeroed = p.zeroed_frames
    assert p.take() == clean                 # clean: handed out untouched
    assert p.zeroed_frames == zeroed
    for expect in reversed(frames):
        assert p.take() == expect
        assert p.read(expect) == ZERO_FRAME
        assert not p.dirty(expect)
        zeroed += 1
        assert p.zeroed_frames == zeroed
    assert p.released_runs == 0


def test_pool_frames_given_one_by_one_are_zeroed_on_reuse():
    p = _FramePoolShim(64)
    frames = [p.take() for _ in range(40)]
    _fill(p, frames, 0x33)
    p.give(frames)                           # one batch per frame: never a long run
    assert p.released_runs == 0
    assert all(p.dirty(f) for f in frames)
    again = [p.take() for _ in range(40)]
    assert again == frames[::-1]
    assert all(p.read(f) == ZERO_FRAME for f in again)
    assert p.zeroed_frames == 40


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("n", [RELEASE_MIN, 17, 64, 512])
def test_pool_long_dirty_runs_go_back_to_the_host(order, n):
    p = _FramePoolShim(1024)
    frames = [p.take() for _ in range(n)]
    _fill(p, frames, 0xEE)
    batch = frames if order == "ascending" else frames[::-1]
    p.give_batch(batch)
    assert p.released_runs == 1
    assert p.stack == batch
    for f in frames:
        assert not p.held(f)
        assert not p.dirty(f)                # the host zeroed them: clean again
        assert p.read(f) == ZERO_FRAME
    again = [p.take() for _ in range(n)]
    assert again == batch[::-1]
    assert all(p.read(f) == ZERO_FRAME for f in again)
    assert p.zeroed_frames == 0              # nothing left to zero by hand


def test_pool_run_boundaries():
    p = _FramePoolShim(256)
    frames = [p.take() for _ in range(100)]
    _fill(p, frames)
    # 15 ascending, then a gap, then 16 descending, then 10 scattered frames.
    p.give_batch(frames[0:15])
    assert p.released_runs == 0
    p.give_batch(frames[20:36][::-1])
    assert p.released_runs == 1
    scattered = frames[40:80:4]
    p.give_batch(scattered)
    assert p.released_runs == 1
    # Two long runs in one batch: each goes back on its own.
    p.give_batch(frames[80:100] + frames[36:40] + frames[15:20])
    assert p.released_runs == 2      # 80..99; 36..39 and 15..19 are separate short runs
    for f in frames[20:36] + frames[80:100]:
        assert not p.dirty(f)
    for f in frames[0:15] + scattered + frames[36:40] + frames[15:20]:
        assert p.dirty(f)
    # Whatever path each took, every frame reads as zero once handed out again.
    for _ in range(p.free_count):
        f = p.take()
        assert p.read(f) == ZERO_FRAME and not p.dirty(f)
    assert p.take() == -1


def test_pool_long_run_with_clean_frames_mixed_in():
    p = _FramePoolShim(128)
    frames = [p.take() for _ in range(48)]
    dirty = frames[:20] + frames[28:48]      # frames 20..27 stay clean
    _fill(p, dirty)
    p.give_batch(frames)
    assert not any(p.dirty(f) for f in frames[:20])
    assert not any(p.dirty(f) for f in frames[28:48])
    assert p.released_runs == 2
    assert all(p.read(f) == ZERO_FRAME for f in frames)


class FramePoolMachine(RuleBasedStateMachine):
    """The pool against a LIFO model with frame contents: a frame handed out reads as zero, a
    held frame reads what was written, and a frame whose dirty bit is clear holds zeros."""

    NFRAMES = 96

    def __init__(self):
        super().__init__()
        self.p = _FramePoolShim(self.NFRAMES)
        self.next_fresh = 0
        self.stack = []
        self.held = {}           # frame -> bytearray content
        self.ever_written = set()

    @initialize(n=st.integers(1, 48), write=st.booleans())
    def start(self, n, write):
        self.take(n)
        if write:
            self.write_all(0x77)

    @rule(n=st.integers(1, 40))
    def take(self, n):
        for _ in range(n):
            f = self.p.take()
            if self.stack:
                assert f == self.stack.pop()
            elif self.next_fresh < self.NFRAMES:
                assert f == self.next_fresh
                self.next_fresh += 1
            else:
                assert f == -1
                return
            assert self.p.read(f) == ZERO_FRAME
            assert not self.p.dirty(f)
            self.held[f] = bytearray(FRAME)
            self.ever_written.discard(f)

    @rule(data=st.data(), whole=st.booleans())
    def write(self, data, whole):
        frames = sorted(self.held)
        if not frames:
            return
        chosen = data.draw(st.lists(st.sampled_from(frames), min_size=1, max_size=len(frames)))
        for f in chosen:
            if whole:
                payload = bytes([f % 251 + 1]) * FRAME
                offset = 0
            else:
                offset = data.draw(st.integers(0, FRAME - 1))
                payload = data.draw(st.binary(min_size=1, max_size=min(64, FRAME - offset)))
            self.p.write(f, offset, payload)
            self.held[f][offset:offset + len(payload)] = payload
            self.ever_written.add(f)

    @rule(byte=st.integers(1, 255))
    def write_all(self, byte):
        for f in self.held:
            self.p.write(f, 0, bytes([byte]) * FRAME)
            self.held[f][:] = bytes([byte]) * FRAME
            self.ever_written.add(f)

    @rule(data=st.data(), how=st.sampled_from(["asc", "desc", "shuffled", "one_by_one"]))
    def give(self, data, how):
        frames = sorted(self.held)
        if not frames:
            return
        if how in ("asc", "desc"):
            lo = data.draw(st.integers(0, len(frames) - 1))
            n = data.draw(st.one_of(st.integers(1, 8), st.integers(RELEASE_MIN - 1, 48)))
            chosen = frames[lo:lo + n]
            if how == "desc":
                chosen.reverse()
        else:
            chosen = data.draw(st.lists(st.sampled_from(frames), min_size=1, unique=True))
        runs = self.p.released_runs
        if how == "one_by_one":
            self.p.give(chosen)
        else:
            self.p.give_batch(chosen)
        if self.p.released_runs > runs:
            event("give: a run went back to the host")
        for f in chosen:
            del self.held[f]
            self.stack.append(f)

    @rule(data=st.data(), descending=st.booleans())
    def give_written_run(self, data, descending):
        """Write a window of held frames with consecutive numbers and give it in one batch
        (a long one goes back to the host)."""
        frames = sorted(self.held)
        runs, run = [], []
        for f in frames:
            if run and f != run[-1] + 1:
                runs.append(run)
                run = []
            run.append(f)
        if run:
            runs.append(run)
        if not runs:
            return
        run = data.draw(st.sampled_from(runs))
        lo = data.draw(st.integers(0, len(run) - 1))
        chosen = run[lo:lo + data.draw(st.integers(1, len(run)))]
        for f in chosen:
            self.p.write(f, FRAME - 1, b"\x01")
            self.held[f][FRAME - 1] = 1
            self.ever_written.add(f)
        if descending:
            chosen.reverse()
        runs_before = self.p.released_runs
        self.p.give_batch(chosen)
        assert self.p.released_runs == runs_before + (len(chosen) >= RELEASE_MIN)
        if len(chosen) >= RELEASE_MIN:
            event("give_written_run: a run went back to the host")
        for f in chosen:
            del self.held[f]
            self.stack.append(f)
            assert not self.p.dirty(f) or len(chosen) < RELEASE_MIN

    @invariant()
    def allocator(self):
        assert self.p.next_fresh == self.next_fresh
        assert self.p.stack == self.stack
        assert self.p.free_count == self.NFRAMES - self.next_fresh + len(self.stack)

    @invariant()
    def contents_and_bits(self):
        for f in range(self.NFRAMES):
            content = self.p.read(f)
            if f in self.held:
                assert self.p.held(f)
                assert content == self.held[f]
                assert self.p.dirty(f) == (f in self.ever_written)
            else:
                assert not self.p.held(f)
                if not self.p.dirty(f):
                    assert content == ZERO_FRAME, "frame %d clean but not zero" % f
                if f >= self.next_fresh or f not in self.ever_written:
                    assert not self.p.dirty(f)

    def teardown(self):
        # Every frame, whichever way it was cleaned, is handed out as zeros.
        while True:
            f = self.p.take()
            if f < 0:
                break
            assert self.p.read(f) == ZERO_FRAME


TestFramePoolMachine = FramePoolMachine.TestCase
TestFramePoolMachine.settings = settings(
    max_examples=80, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_pool_ever_written_is_tracked_per_handout():
    """A frame written, freed (short run) and handed out again is clean: the dirty bit is
    about the current content, not the frame's history."""
    p = _FramePoolShim(4)
    f = p.take()
    p.write(f, 0, b"\x01")
    p.give([f])
    assert p.take() == f
    assert not p.dirty(f) and p.read(f) == ZERO_FRAME


def test_pool_rejects_bad_sizes():
    with pytest.raises(ValueError):
        _FramePoolShim(0)
    with pytest.raises(ValueError):
        _FramePoolShim(1 << 32)          # frame numbers are 32-bit (at most 2**32 - 2)


def test_pool_random_walk_against_model():
    """A long seeded walk (cheaper than hypothesis for many steps): LIFO order and zeros."""
    rng = random.Random(20170512)
    n = 600
    p = _FramePoolShim(n)
    next_fresh, stack, held = 0, [], set()
    for _ in range(1500):
        if rng.random() < 0.5:
            for _ in range(rng.randrange(1, 48)):   # a burst of takes, mostly written
                f = p.take()
                if stack:
                    assert f == stack.pop()
                elif next_fresh < n:
                    assert f == next_fresh
                    next_fresh += 1
                else:
                    assert f == -1
                    break
                assert p.read(f) == ZERO_FRAME
                held.add(f)
                if rng.random() < 0.9:
                    p.write(f, rng.randrange(FRAME - 8), b"\xff" + rng.randbytes(7))
        elif held:
            frames = sorted(held)
            lo = rng.randrange(len(frames))
            chosen = frames[lo:lo + rng.randrange(1, 64)]
            if rng.random() < 0.5:
                chosen.reverse()
            p.give_batch(chosen)
            stack.extend(chosen)
            held.difference_update(chosen)
        assert p.stack == stack and p.next_fresh == next_fresh
    assert p.released_runs > 0 and p.zeroed_frames > 0
