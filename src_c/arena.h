/* The arena: one anonymous mapping that is the simulated physical memory.
 *
 * Reserved, never populated: MAP_NORESERVE so a terabyte costs only address space, and
 * the host commits a page only when the simulation first writes it. Freed runs go back
 * to the host with MADV_DONTNEED, which also makes them read as zero again.
 */
#ifndef VMO_ARENA_H
#define VMO_ARENA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Map `size` bytes of zero-filled, reserved-but-unpopulated memory.
 * Returns NULL and sets errno on failure. */
void *vmo_arena_map(size_t size);

/* Unmap what vmo_arena_map returned. Returns 0, or -1 with errno. */
int vmo_arena_unmap(void *base, size_t size);

/* Give `size` bytes at `addr` (page aligned) back to the host; they read as zero after.
 * Returns 0, or -1 with errno (the caller then zeroes them by hand). */
int vmo_arena_release(void *addr, size_t size);

/* Resident bytes of the calling process (from /proc/self/statm), or -1. */
int64_t vmo_host_rss(void);

#ifdef __cplusplus
}
#endif
#endif
