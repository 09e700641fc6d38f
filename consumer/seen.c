#include "seen.h"

#include "arena.h"

#include <stdlib.h>
#include <string.h>

struct slot {
	uint64_t hash; /* 0: empty */
	const char *id;
	int64_t at_us;
};

/* One transaction's keys: an open-addressing table, its strings in an arena. */
struct generation {
	struct slot *slots;
	size_t cap, n; /* cap a power of two, n at most cap / 2 */
	struct arena strings;
};

struct seen {
	struct generation *gen;
	int n_gen, newest;
};

/* FNV-1a over the id and the instant; never 0, which marks an empty slot. */
static uint64_t key_hash(const char *id, int64_t at_us)
{
	uint64_t h = 14695981039346656037ULL;
	uint64_t at = (uint64_t)at_us;

	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	for (int i = 0; i < 8; i++, at >>= 8)
		h = (h ^ (at & 0xff)) * 1099511628211ULL;
	return h ? h : 1;
}

struct seen *seen_new(int generations)
{
	struct seen *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->n_gen = generations < 1 ? 1 : generations;
	s->gen = calloc((size_t)s->n_gen, sizeof(*s->gen));
	if (s->gen == NULL) {
		free(s);
		return NULL;
	}
	for (int g = 0; g < s->n_gen; g++)
		arena_init(&s->gen[g].strings, 0);
	return s;
}

void seen_destroy(struct seen *s)
{
	if (s == NULL)
		return;
	for (int g = 0; g < s->n_gen; g++) {
		free(s->gen[g].slots);
		arena_release(&s->gen[g].strings);
	}
	free(s->gen);
	free(s);
}

static bool generation_has(const struct generation *g, uint64_t h, const char *id, int64_t at_us)
{
	if (g->n == 0)
		return false;
	for (size_t i = h & (g->cap - 1);; i = (i + 1) & (g->cap - 1)) {
		const struct slot *sl = &g->slots[i];

		if (sl->hash == 0)
			return false;
		if (sl->hash == h && sl->at_us == at_us && strcmp(sl->id, id) == 0)
			return true;
	}
}

bool seen_has(const struct seen *s, const char *id, int64_t at_us)
{
	uint64_t h = key_hash(id, at_us);

	for (int g = 0; g < s->n_gen; g++)
		if (generation_has(&s->gen[g], h, id, at_us))
			return true;
	return false;
}

void seen_rotate(struct seen *s)
{
	struct generation *g;

	s->newest = (s->newest + 1) % s->n_gen;
	g = &s->gen[s->newest];
	if (g->slots)
		memset(g->slots, 0, g->cap * sizeof(*g->slots));
	g->n = 0;
	arena_reset(&g->strings);
}

void seen_clear(struct seen *s)
{
	for (int g = 0; g < s->n_gen; g++)
		seen_rotate(s);
}

static void generation_put(struct generation *g, struct slot sl)
{
	size_t i = sl.hash & (g->cap - 1);

	while (g->slots[i].hash != 0)
		i = (i + 1) & (g->cap - 1);
	g->slots[i] = sl;
	g->n++;
}

int seen_add(struct seen *s, const char *id, int64_t at_us)
{
	struct generation *g = &s->gen[s->newest];
	uint64_t h = key_hash(id, at_us);

	if (generation_has(g, h, id, at_us))
		return 0;
	if (2 * (g->n + 1) > g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 1024;
		struct slot *old = g->slots, *slots = calloc(cap, sizeof(*slots));

		if (slots == NULL)
			return -1;
		g->slots = slots;
		g->n = 0;
		size_t old_cap = g->cap;
		g->cap = cap;
		for (size_t i = 0; i < old_cap; i++)
			if (old[i].hash != 0)
				generation_put(g, old[i]);
		free(old);
	}
	char *copy = arena_strndup(&g->strings, id, strlen(id));

	if (copy == NULL)
		return -1;
	generation_put(g, (struct slot){h, copy, at_us});
	return 0;
}
