/*
 * arena.h - a bump allocator whose memory is released all at once.
 *
 * A batch decodes every message into its arena (also through protobuf-c's
 * allocator interface), so no per-message free is needed or possible.
 */
#ifndef FC_ARENA_H
#define FC_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

struct arena_chunk;

struct arena {
	struct arena_chunk *head;
	size_t chunk_size;
	size_t used;           /* bytes handed out since the last reset */
	ProtobufCAllocator pb; /* allocates from this arena; free is a no-op */
};

/* Prepares an embedded arena; chunk_size 0 means 64 KiB. */
void arena_init(struct arena *a, size_t chunk_size);
/* Frees every chunk. */
void arena_release(struct arena *a);
/* Forgets every allocation but keeps one chunk for reuse. */
void arena_reset(struct arena *a);
/* 16-byte aligned memory valid until reset or release; NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t size);
/* A NUL-terminated copy of the len bytes at s; NULL when out of memory. */
char *arena_strndup(struct arena *a, const char *s, size_t len);

#endif
