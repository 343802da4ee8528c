/* bus.c: one registry for port I/O and MMIO ranges, looked up on every exit. */
#include <errno.h>
#include <string.h>

#include "lib/lib.h"
#include "vmm.h"

void bus_init(struct bus *bus)
{
    memset(bus, 0, sizeof(*bus));
    pthread_mutex_init(&bus->unhandled_lock, NULL);
}

void bus_destroy(struct bus *bus)
{
    pthread_mutex_destroy(&bus->unhandled_lock);
}

/* Logs an access no device claimed, once per address: a guest probing hardware we do not have is
 * normal, but the first sighting is worth knowing when a guest misbehaves. */
static void note_unhandled(struct bus *bus, enum bus_space space, uint64_t addr, uint32_t len,
                           bool is_write)
{
    uint64_t key = ((uint64_t)space << 63) | addr;
    bool fresh = true;

    pthread_mutex_lock(&bus->unhandled_lock);
    for (unsigned i = 0; i < bus->nunhandled && fresh; i++)
        fresh = bus->unhandled[i] != key;
    if (fresh && bus->nunhandled < BUS_MAX_UNHANDLED)
        bus->unhandled[bus->nunhandled++] = key;
    else if (fresh)
        fresh = false; /* the set is full: stay quiet rather than flood */
    pthread_mutex_unlock(&bus->unhandled_lock);
    if (fresh)
        log_info("bus: unhandled %s %s of %u bytes at %#llx (ignored)",
                 space == BUS_PIO ? "port" : "MMIO", is_write ? "write" : "read", len,
                 (unsigned long long)addr);
}

int bus_register(struct bus *bus, enum bus_space space, uint64_t base, uint64_t len, bus_io_fn fn,
                 void *opaque, const char *name)
{
    struct bus_range *r = bus->ranges[space];
    unsigned n = bus->count[space], pos;
    uint64_t end;

    if (len == 0 || ck_add_u64(base, len, &end) || !fn)
        return -EINVAL;
    if (n == BUS_MAX_RANGES)
        return -ENOSPC;
    for (pos = 0; pos < n && r[pos].base < base; pos++)
        ;
    if (pos > 0 && r[pos - 1].base + r[pos - 1].len > base)
        return -EEXIST;
    if (pos < n && end > r[pos].base)
        return -EEXIST;
    memmove(&r[pos + 1], &r[pos], (n - pos) * sizeof(*r));
    r[pos] = (struct bus_range){.base = base, .len = len, .fn = fn, .opaque = opaque, .name = name};
    bus->count[space] = n + 1;
    return 0;
}

const struct bus_range *bus_find(const struct bus *bus, enum bus_space space, uint64_t addr)
{
    const struct bus_range *r = bus->ranges[space];
    unsigned lo = 0, hi = bus->count[space];

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (addr < r[mid].base)
            hi = mid;
        else if (addr - r[mid].base >= r[mid].len)
            lo = mid + 1;
        else
            return &r[mid];
    }
    return NULL;
}

bool bus_dispatch(struct bus *bus, enum bus_space space, uint64_t addr, uint8_t *data, uint32_t len,
                  bool is_write)
{
    const struct bus_range *r = bus_find(bus, space, addr);

    if (!r) {
        if (!is_write)
            memset(data, 0xff, len);
        note_unhandled(bus, space, addr, len, is_write);
        return false;
    }
    r->fn(r->opaque, addr - r->base, data, len, is_write);
    return true;
}
