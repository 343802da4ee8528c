/* boot_timer.c: the guest marks "userspace reached" with one write; we log the time since start. */
#include <stdatomic.h>
#include <string.h>

#include "devices/legacy/legacy.h"
#include "lib/lib.h"

void boot_timer_init(struct boot_timer *timer, uint64_t start_ns)
{
    timer->start_ns = start_ns;
    atomic_init(&timer->first_ns, 0);
    atomic_init(&timer->writes, 0);
}

void boot_timer_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct boot_timer *timer = opaque;
    uint64_t now, elapsed, expected = 0;

    if (!is_write) {
        memset(data, 0, len);
        return;
    }
    if (offset != 0) {
        log_once(LOG_INFO, "boot-timer: ignoring a write at offset 0x%llx (only offset 0 counts)",
                 (unsigned long long)offset);
        return;
    }
    now = time_now_ns();
    elapsed = now > timer->start_ns ? now - timer->start_ns : 0;
    if (!elapsed)
        elapsed = 1; /* 0 means "not yet" */
    atomic_fetch_add(&timer->writes, 1);
    /* Several vCPUs may write at once: exactly one records and logs. */
    if (atomic_compare_exchange_strong(&timer->first_ns, &expected, elapsed))
        log_info("boot-timer: userspace reached after %llu.%03llu ms",
                 (unsigned long long)(elapsed / 1000000),
                 (unsigned long long)(elapsed / 1000 % 1000));
}
