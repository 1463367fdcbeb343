/* See arena.h. */
#define _GNU_SOURCE
#include "arena.h"

#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

void *vmo_arena_map(size_t size) {
    if (size == 0) {
        errno = EINVAL;
        return NULL;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    return p;
}

int vmo_arena_unmap(void *base, size_t size) {
    if (base == NULL)
        return 0;
    return munmap(base, size);
}

int vmo_arena_release(void *addr, size_t size) {
    if (size == 0)
        return 0;
    return madvise(addr, size, MADV_DONTNEED);
}

int64_t vmo_host_rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long total = 0, resident = 0;
    if (f == NULL)
        return -1;
    int n = fscanf(f, "%lld %lld", &total, &resident);
    fclose(f);
    if (n != 2)
        return -1;
    return (int64_t)resident * (int64_t)sysconf(_SC_PAGESIZE);
}
