/* loader.c: kernel format detection and the placement shared by the bzImage and ELF loaders:
 * command line, initrd and the zero page. The layout is described in docs/boot.md. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/lib.h"
#include "loader_internal.h"

int x86_loader_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return ret;
}

const char *x86_loader_size_str(uint64_t bytes, char *buf, size_t len)
{
    if (bytes >= MiB)
        snprintf(buf, len, "%llu MiB", (unsigned long long)((bytes + MiB - 1) / MiB));
    else if (bytes >= KiB)
        snprintf(buf, len, "%llu KiB", (unsigned long long)((bytes + KiB - 1) / KiB));
    else
        snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
    return buf;
}

int x86_loader_put_cmdline(struct guest_mem *mem, const char *cmdline, uint64_t max_len, char *err,
                           size_t errlen)
{
    /* strnlen: never scan further than the longest line we could accept plus one. */
    size_t len = strnlen(cmdline, X86_CMDLINE_MAX);
    uint8_t *dst;

    if (max_len > X86_CMDLINE_MAX - 1)
        max_len = X86_CMDLINE_MAX - 1;
    if (len > max_len)
        return x86_loader_fail(
            err, errlen, -E2BIG, "command line is %s%zu bytes; this kernel accepts at most %llu",
            len == X86_CMDLINE_MAX ? "at least " : "", len, (unsigned long long)max_len);
    dst = guest_mem_ptr(mem, X86_CMDLINE_ADDR, len + 1);
    if (!dst)
        return x86_loader_fail(err, errlen, -ENOMEM, "no guest RAM for the command line at %#llx",
                               X86_CMDLINE_ADDR);
    memcpy(dst, cmdline, len);
    dst[len] = '\0';
    return 0;
}

int x86_loader_put_initrd(struct guest_mem *mem, const struct x86_boot_config *cfg, uint64_t limit,
                          struct x86_boot_info *info, char *err, size_t errlen)
{
    uint64_t size = cfg->initrd_len, top = guest_mem_low_end(mem), start;
    char sz[32], ram[32];

    info->initrd_start = 0;
    info->initrd_size = 0;
    if (!cfg->initrd || size == 0)
        return 0;
    if (limit < top)
        top = limit;
    x86_loader_size_str(size, sz, sizeof(sz));
    x86_loader_size_str(mem->size, ram, sizeof(ram));
    if (size > top || ALIGN_DOWN(top - size, X86_PAGE_SIZE) < X86_HIMEM_START)
        goto no_room;
    start = ALIGN_DOWN(top - size, X86_PAGE_SIZE);
    if (start < info->kernel_end && start + size > info->kernel_start) {
        /* The top of RAM is taken by the kernel: try the gap just below it. */
        if (info->kernel_start < size ||
            ALIGN_DOWN(info->kernel_start - size, X86_PAGE_SIZE) < X86_HIMEM_START)
            goto no_room;
        start = ALIGN_DOWN(info->kernel_start - size, X86_PAGE_SIZE);
    }
    if (guest_mem_write(mem, start, cfg->initrd, size) < 0)
        goto no_room;
    info->initrd_start = start;
    info->initrd_size = size;
    return 0;

no_room:
    return x86_loader_fail(err, errlen, -ENOMEM,
                           "initrd of %s does not fit below %#llx in %s of RAM beside the kernel "
                           "at [%#llx, %#llx); give the VM more memory",
                           sz, (unsigned long long)top, ram, (unsigned long long)info->kernel_start,
                           (unsigned long long)info->kernel_end);
}

int x86_loader_put_zero_page(struct guest_mem *mem, struct boot_params *bp,
                             const struct x86_boot_config *cfg, const struct x86_boot_info *info,
                             bool with_rsdp)
{
    void *dst = guest_mem_ptr(mem, X86_ZERO_PAGE_ADDR, sizeof(*bp));

    if (!dst)
        return -ENOMEM;
    bp->hdr.type_of_loader = 0xff; /* "undefined" boot loader: no assigned id */
    bp->hdr.cmd_line_ptr = (uint32_t)X86_CMDLINE_ADDR;
    bp->ext_cmd_line_ptr = 0;
    bp->hdr.ramdisk_image = (uint32_t)info->initrd_start;
    bp->hdr.ramdisk_size = (uint32_t)info->initrd_size;
    bp->ext_ramdisk_image = (uint32_t)(info->initrd_start >> 32);
    bp->ext_ramdisk_size = (uint32_t)(info->initrd_size >> 32);
    bp->e820_entries = (uint8_t)x86_e820_build(mem, bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE);
    if (with_rsdp)
        bp->acpi_rsdp_addr = cfg->rsdp_gpa;
    memcpy(dst, bp, sizeof(*bp));
    return 0;
}

static bool is_bzimage(const uint8_t *k, size_t len)
{
    return len >= 0x206 && k[0x1fe] == 0x55 && k[0x1ff] == 0xaa && !memcmp(k + 0x202, "HdrS", 4);
}

static bool is_elf(const uint8_t *k, size_t len)
{
    return len >= 4 && k[0] == 0x7f && k[1] == 'E' && k[2] == 'L' && k[3] == 'F';
}

int x86_load_kernel(struct guest_mem *mem, const struct x86_boot_config *cfg,
                    struct x86_boot_info *info, char *err, size_t errlen)
{
    const uint8_t *k = cfg->kernel;
    size_t len = cfg->kernel_len;

    memset(info, 0, sizeof(*info));
    if (err && errlen)
        err[0] = '\0';
    if (!k || len == 0)
        return x86_loader_fail(err, errlen, -EINVAL, "kernel image is empty");
    if (!cfg->cmdline)
        return x86_loader_fail(err, errlen, -EINVAL, "no command line given (use \"\")");
    if (is_bzimage(k, len))
        return x86_bzimage_load(mem, cfg, info, err, errlen);
    if (is_elf(k, len))
        return x86_elf_load(mem, cfg, info, err, errlen);
    if (len >= 0x200 && k[0x1fe] == 0x55 && k[0x1ff] == 0xaa)
        return x86_loader_fail(err, errlen, -EINVAL,
                               "image has a boot sector but no \"HdrS\" setup header at 0x202: "
                               "not a Linux bzImage with boot protocol 2.00 or later");
    return x86_loader_fail(err, errlen, -EINVAL,
                           "image of %zu bytes is neither a bzImage (boot sector 0xAA55 at 0x1fe "
                           "and \"HdrS\" at 0x202) nor an ELF file (\\x7fELF)",
                           len);
}
