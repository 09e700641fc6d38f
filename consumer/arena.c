#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_chunk {
	struct arena_chunk *next;
	size_t size; /* usable bytes after the header */
	size_t used;
	max_align_t data[];
};

#define ALIGN 16

static void *pb_alloc(void *data, size_t size)
{
	return arena_alloc(data, size);
}

/* Memory of the arena is released with the arena, not message by message. */
static void pb_free(void *data, void *ptr)
{
	(void)data;
	(void)ptr;
}

void arena_init(struct arena *a, size_t chunk_size)
{
	memset(a, 0, sizeof(*a));
	a->chunk_size = chunk_size ? chunk_size : 64 * 1024;
	a->pb.alloc = pb_alloc;
	a->pb.free = pb_free;
	a->pb.allocator_data = a;
}

void arena_release(struct arena *a)
{
	struct arena_chunk *c = a->head;

	while (c) {
		struct arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->used = 0;
}

void arena_reset(struct arena *a)
{
	/* Keep the first regular-size chunk found; oversized ones go. */
	struct arena_chunk *keep = NULL, *c = a->head;

	while (c) {
		struct arena_chunk *next = c->next;
		if (keep == NULL && c->size == a->chunk_size) {
			keep = c;
		} else {
			free(c);
		}
		c = next;
	}
	if (keep) {
		keep->next = NULL;
		keep->used = 0;
	}
	a->head = keep;
	a->used = 0;
}

void *arena_alloc(struct arena *a, size_t size)
{
	size_t need = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
	struct arena_chunk *c = a->head;

	if (need < size)
		return NULL;
	if (need == 0)
		need = ALIGN;
	if (c == NULL || c->size - c->used < need) {
		size_t csize = need > a->chunk_size / 4 ? need : a->chunk_size;
		if (csize > SIZE_MAX - sizeof(*c))
			return NULL;
		c = malloc(sizeof(*c) + csize);
		if (c == NULL)
			return NULL;
		c->size = csize;
		c->used = 0;
		if (csize != a->chunk_size && a->head) {
			/* A big block goes behind the current chunk, which stays in use. */
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = a->head;
			a->head = c;
		}
	}
	void *p = (char *)c->data + c->used;
	c->used += need;
	a->used += need;
	return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
	char *p = arena_alloc(a, len + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}
