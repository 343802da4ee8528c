/* platform.c: the one validation of a platform description, shared by the MP and ACPI writers. */
#include <errno.h>

#include "lib/lib.h"
#include "x86.h"

int x86_platform_check(const struct x86_platform *plat)
{
    if (plat->ncpus < 1 || plat->ncpus > X86_MAX_CPUS) {
        log_error("platform: %u vCPUs; 1 to %u are supported", plat->ncpus, X86_MAX_CPUS);
        return -EINVAL;
    }
    if (plat->nvirtio > X86_MAX_VIRTIO) {
        log_error("platform: %u virtio devices; at most %u", plat->nvirtio, X86_MAX_VIRTIO);
        return -EINVAL;
    }
    for (unsigned i = 0; i < plat->nvirtio; i++) {
        const struct x86_virtio_dev *v = &plat->virtio[i];
        if (v->size == 0 || !range_within(v->base, v->size, 1ULL << 32) || v->gsi > 23) {
            log_error("platform: virtio device %u at 0x%llx size 0x%llx GSI %u; it must lie below "
                      "4 GiB with a GSI of 0..23",
                      i, (unsigned long long)v->base, (unsigned long long)v->size, v->gsi);
            return -EINVAL;
        }
    }
    return 0;
}

uint8_t x86_table_checksum(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint8_t sum = 0;

    while (len--)
        sum += *p++;
    return (uint8_t)-sum;
}
