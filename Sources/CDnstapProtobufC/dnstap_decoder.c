#include "dnstap_decoder.h"

#include <stdlib.h>

// protobuf-c allocates the message structs and a copy of each bytes field through the
// allocator, and frees nothing itself on success. A bump arena makes that a pointer increment,
// and one reset per message frees it all: no malloc/free per field.
struct dtf_arena {
    ProtobufCAllocator allocator;
    unsigned char *block;
    size_t size;
    size_t used;
    void **spills;          // allocations that did not fit in the block
    size_t spill_count;
    size_t spill_capacity;
};

static void *arena_alloc(void *data, size_t size) {
    dtf_arena *arena = data;
    size_t rounded = (size + 15) & ~(size_t)15;
    if (rounded >= size && rounded <= arena->size - arena->used) {
        void *pointer = arena->block + arena->used;
        arena->used += rounded;
        return pointer;
    }
    if (arena->spill_count == arena->spill_capacity) {
        size_t capacity = arena->spill_capacity ? arena->spill_capacity * 2 : 8;
        void **spills = realloc(arena->spills, capacity * sizeof *spills);
        if (spills == NULL) return NULL;
        arena->spills = spills;
        arena->spill_capacity = capacity;
    }
    void *pointer = malloc(size ? size : 1);
    if (pointer == NULL) return NULL;
    arena->spills[arena->spill_count++] = pointer;
    return pointer;
}

// Nothing is freed one by one: dtf_arena_reset frees it all.
static void arena_free(void *data, void *pointer) {
    (void)data;
    (void)pointer;
}

dtf_arena *dtf_arena_create(size_t block_size) {
    dtf_arena *arena = calloc(1, sizeof *arena);
    if (arena == NULL) return NULL;
    arena->block = malloc(block_size);
    if (arena->block == NULL) {
        free(arena);
        return NULL;
    }
    arena->size = block_size;
    arena->allocator.alloc = arena_alloc;
    arena->allocator.free = arena_free;
    arena->allocator.allocator_data = arena;
    return arena;
}

void dtf_arena_reset(dtf_arena *arena) {
    for (size_t i = 0; i < arena->spill_count; i++) free(arena->spills[i]);
    arena->spill_count = 0;
    arena->used = 0;
}

void dtf_arena_destroy(dtf_arena *arena) {
    if (arena == NULL) return;
    dtf_arena_reset(arena);
    free(arena->spills);
    free(arena->block);
    free(arena);
}

const Dnstap__Dnstap *dtf_decode(dtf_arena *arena, const uint8_t *bytes, size_t length) {
    dtf_arena_reset(arena);
    return dnstap__dnstap__unpack(&arena->allocator, length, bytes);
}

const PBDNSMessage *dtf_decode_pdns(dtf_arena *arena, const uint8_t *bytes, size_t length) {
    dtf_arena_reset(arena);
    return pbdnsmessage__unpack(&arena->allocator, length, bytes);
}
