/* fuzz_loader.c: libFuzzer target feeding arbitrary bytes to x86_load_kernel as a kernel image. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct guest_mem mem;
static const uint8_t initrd[8192];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct x86_boot_config cfg = {.initrd = initrd,
                                  .initrd_len = sizeof(initrd),
                                  .cmdline = "console=ttyS0 quiet",
                                  .rsdp_gpa = X86_ACPI_ADDR};
    struct x86_boot_info info;
    uint8_t *copy;
    char err[256];

    /* 64 MiB leaves room for a kernel at 16 MiB; one arena for the whole run. */
    if (!mem.nregions && guest_mem_init(&mem, 64 * MiB, X86_MMIO_HOLE_START) < 0)
        abort();
    /* An exact-size heap copy, so ASan catches any read past the image's end. */
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    cfg.kernel = copy;
    cfg.kernel_len = size;
    if (x86_load_kernel(&mem, &cfg, &info, err, sizeof(err)) == 0) {
        /* A success must describe a coherent layout inside guest memory. */
        if (!guest_mem_ptr(&mem, info.kernel_start, info.kernel_end - info.kernel_start) ||
            info.kernel_end < info.kernel_start || !info.format ||
            (info.initrd_size && !guest_mem_ptr(&mem, info.initrd_start, info.initrd_size)) ||
            !guest_mem_ptr(&mem, info.entry, 1))
            abort();
    } else if (!err[0]) {
        abort(); /* every refusal names its reason */
    }
    free(copy);
    return 0;
}
