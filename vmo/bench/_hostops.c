/* The host-kernel contender of `python -m vmo bench` and `pytest benchmarks/`.
 *
 * Each function does, with Linux system calls, the work equivalent to one benchmarked VMO
 * operation (see vmo/bench/cases.py for the pairing), and times it here in C with
 * clock_gettime(CLOCK_MONOTONIC) around the system call(s) only, so the Python -> ctypes -> C
 * call is not counted. Small system calls are repeated `iters` times inside one timed loop.
 *
 * Not part of the extension modules: vmo/bench/hostops.py compiles this file at run time with gcc
 * (cached by source hash in ~/.cache/vmo-bench) and loads it with ctypes.
 *
 * Conventions: timed functions return the elapsed nanoseconds (>= 0) or -errno; the others
 * return 0 (or a file descriptor) on success and -errno on failure. Mappings use 4 KiB pages
 * (MADV_NOHUGEPAGE) so that the host does per-page work like the simulated kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#ifndef MADV_NOHUGEPAGE
#define MADV_NOHUGEPAGE 15
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

#define VH_PAGE 4096ULL

int64_t vh_abi(void) { return 1; }

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t neg_errno(void) { return errno ? -(int64_t)errno : -EIO; }

static int memfd(const char *name) {
#ifdef SYS_memfd_create
    return (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC);
#else
    (void)name;
    errno = ENOSYS;
    return -1;
#endif
}

/* -- anonymous memory (COMMIT, DECOMMIT, recommit) ------------------------------------------ */

/* An anonymous private mapping of `len` bytes, nothing populated. NULL on failure. */
void *vh_map(uint64_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, len, MADV_NOHUGEPAGE); /* 4 KiB pages; harmless if THP is off */
    return p;
}

int64_t vh_unmap(void *p, uint64_t len) { return munmap(p, len) ? neg_errno() : 0; }

/* 0 if MADV_POPULATE_WRITE works here, else -errno (EINVAL before Linux 5.14). */
int64_t vh_probe_populate(void) {
    void *p = vh_map(VH_PAGE);
    int64_t r;
    if (p == NULL)
        return neg_errno();
    r = madvise(p, VH_PAGE, MADV_POPULATE_WRITE) ? neg_errno() : 0;
    munmap(p, VH_PAGE);
    return r;
}

/* COMMIT: allocate and zero every page of the range (write-fault them all). Timed. */
int64_t vh_populate(void *p, uint64_t len) {
    int64_t t0 = now_ns();
    int r = madvise(p, len, MADV_POPULATE_WRITE);
    int64_t t1 = now_ns();
    return r ? neg_errno() : t1 - t0;
}

/* DECOMMIT: drop every page of the range. Timed. */
int64_t vh_dontneed(void *p, uint64_t len) {
    int64_t t0 = now_ns();
    int r = madvise(p, len, MADV_DONTNEED);
    int64_t t1 = now_ns();
    return r ? neg_errno() : t1 - t0;
}

/* DECOMMIT + COMMIT of the same range, timed together. */
int64_t vh_dontneed_populate(void *p, uint64_t len) {
    int64_t t0 = now_ns();
    int r = madvise(p, len, MADV_DONTNEED);
    if (r == 0)
        r = madvise(p, len, MADV_POPULATE_WRITE);
    int64_t t1 = now_ns();
    return r ? neg_errno() : t1 - t0;
}

/* Untimed preparation: populate the range (MADV_POPULATE_WRITE, else one write per page). */
int64_t vh_prefault(void *p, uint64_t len) {
    uint64_t off;
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
        return 0;
    for (off = 0; off < len; off += VH_PAGE)
        ((volatile char *)p)[off] = 0;
    return 0;
}

/* Write one byte every `stride` bytes (1 page in 64: stride 64 * 4096). Timed. */
int64_t vh_touch(void *p, uint64_t len, uint64_t stride, int byte) {
    uint64_t off;
    int64_t t0 = now_ns();
    for (off = 0; off < len; off += stride)
        ((volatile unsigned char *)p)[off] = (unsigned char)byte;
    return now_ns() - t0;
}

/* Write every byte of the range. Timed. */
int64_t vh_fill(void *p, uint64_t len, int byte) {
    int64_t t0 = now_ns();
    memset(p, byte, len);
    __asm__ volatile("" : : "r"(p) : "memory");
    return now_ns() - t0;
}

/* -- /proc/self/pagemap (LOOKUP) ------------------------------------------------------------ */

int64_t vh_open_pagemap(void) {
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? neg_errno() : fd;
}

int64_t vh_close(int64_t fd) { return close((int)fd) ? neg_errno() : 0; }

static int64_t pread_full(int fd, void *buf, uint64_t n, uint64_t off) {
    uint64_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return neg_errno();
        }
        if (r == 0)
            return -EIO;
        done += (uint64_t)r;
    }
    return 0;
}

/* LOOKUP: the 8-byte pagemap entry (PFN and flags) of every page of [p, p+len) into `out`.
 * Timed. */
int64_t vh_pagemap(int64_t fd, const void *p, uint64_t len, void *out) {
    uint64_t off = ((uint64_t)(uintptr_t)p / VH_PAGE) * 8, n = (len / VH_PAGE) * 8;
    int64_t t0 = now_ns();
    int64_t r = pread_full((int)fd, out, n, off);
    int64_t t1 = now_ns();
    return r < 0 ? r : t1 - t0;
}

/* LOOKUP of one page, `iters` times: an 8-byte pagemap pread. Timed. */
int64_t vh_pagemap_loop(int64_t fd, const void *p, int64_t iters) {
    uint64_t entry, off = ((uint64_t)(uintptr_t)p / VH_PAGE) * 8;
    int64_t i, t0 = now_ns();
    for (i = 0; i < iters; i++)
        if (pread((int)fd, &entry, 8, (off_t)off) != 8)
            return neg_errno();
    return now_ns() - t0;
}

/* COMMIT of one already populated page, `iters` times. Timed. */
int64_t vh_populate_loop(void *p, int64_t iters) {
    int64_t i, t0 = now_ns();
    for (i = 0; i < iters; i++)
        if (madvise(p, VH_PAGE, MADV_POPULATE_WRITE))
            return neg_errno();
    return now_ns() - t0;
}

/* -- memfd (read/write, create+close, clone + first write, get_size) ------------------------ */

/* A memfd of `size` bytes, every byte set to `byte` (so its pages exist). fd or -errno. */
int64_t vh_memfd(uint64_t size, int byte) {
    char chunk[65536];
    uint64_t off = 0;
    int fd = memfd("vmo-bench");
    if (fd < 0)
        return neg_errno();
    if (ftruncate(fd, (off_t)size)) {
        int64_t r = neg_errno();
        close(fd);
        return r;
    }
    memset(chunk, byte, sizeof chunk);
    while (off < size) {
        uint64_t n = size - off < sizeof chunk ? size - off : sizeof chunk;
        ssize_t w = pwrite(fd, chunk, n, (off_t)off);
        if (w <= 0) {
            int64_t r = w < 0 ? neg_errno() : -EIO;
            close(fd);
            return r;
        }
        off += (uint64_t)w;
    }
    return fd;
}

/* vmo_read: pread of `n` bytes at `off`, `iters` times. Timed. */
int64_t vh_pread_loop(int64_t fd, void *buf, uint64_t n, uint64_t off, int64_t iters) {
    int64_t i, t0 = now_ns();
    for (i = 0; i < iters; i++)
        if (pread((int)fd, buf, n, (off_t)off) != (ssize_t)n)
            return neg_errno();
    return now_ns() - t0;
}

/* vmo_write: pwrite of `n` bytes at `off`, `iters` times. Timed. */
int64_t vh_pwrite_loop(int64_t fd, const void *buf, uint64_t n, uint64_t off, int64_t iters) {
    int64_t i, t0 = now_ns();
    for (i = 0; i < iters; i++)
        if (pwrite((int)fd, buf, n, (off_t)off) != (ssize_t)n)
            return neg_errno();
    return now_ns() - t0;
}

/* vmo_create + handle_close: memfd_create + close, `iters` times. Timed. */
int64_t vh_memfd_cycle(int64_t iters) {
    int64_t i, t0 = now_ns();
    for (i = 0; i < iters; i++) {
        int fd = memfd("vmo-bench");
        if (fd < 0)
            return neg_errno();
        close(fd);
    }
    return now_ns() - t0;
}

/* vmo_clone + first write + handle_close: a private (copy-on-write) mapping of the first page
 * of `fd`, one byte written (the copy fault), munmap; `iters` times. Timed. */
int64_t vh_cow_loop(int64_t fd, int64_t iters) {
    int64_t i, t0 = now_ns();
    for (i = 0; i < iters; i++) {
        void *q = mmap(NULL, VH_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, (int)fd, 0);
        if (q == MAP_FAILED)
            return neg_errno();
        ((volatile char *)q)[0] = 1;
        munmap(q, VH_PAGE);
    }
    return now_ns() - t0;
}

/* vmo_get_size: fstat of a memfd, `iters` times. Timed. */
int64_t vh_fstat_loop(int64_t fd, int64_t iters) {
    struct stat st;
    int64_t i, t0 = now_ns();
    for (i = 0; i < iters; i++)
        if (fstat((int)fd, &st))
            return neg_errno();
    return now_ns() - t0;
}
