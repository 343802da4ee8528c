/* loader_internal.h: helpers shared by the bzImage and ELF loaders (loader.c) and their entries. */
#ifndef KILN_X86_LOADER_INTERNAL_H
#define KILN_X86_LOADER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "x86.h"

#define X86_PAGE_SIZE 0x1000ULL

/* Highest address + 1 an initrd may reach when the kernel does not say (Linux's own
 * initrd_addr_max for x86_64 is 0x7fffffff). */
#define X86_INITRD_LIMIT_DEFAULT 0x80000000ULL

/* Formats a message into err (if errlen > 0) and returns ret. */
int x86_loader_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes "300 MiB", "12 KiB" or "100 bytes" (rounded up) into buf. */
const char *x86_loader_size_str(uint64_t bytes, char *buf, size_t len);

/* Checks that cfg->cmdline is at most max_len bytes (without the NUL, and within X86_CMDLINE_MAX)
 * and copies it to X86_CMDLINE_ADDR. Returns 0, -E2BIG or -ENOMEM. */
int x86_loader_put_cmdline(struct guest_mem *mem, const char *cmdline, uint64_t max_len, char *err,
                           size_t errlen);

/* Chooses where cfg->initrd goes: the highest page-aligned address at or above X86_HIMEM_START
 * whose end is at or below min(limit, low RAM end) and that does not overlap
 * [info->kernel_start, info->kernel_end). Copies it there and fills info->initrd_*. No initrd
 * (or an empty one) leaves them 0. Returns 0 or -ENOMEM with a message. */
int x86_loader_put_initrd(struct guest_mem *mem, const struct x86_boot_config *cfg, uint64_t limit,
                          struct x86_boot_info *info, char *err, size_t errlen);

/* Fills the fields of a zero page every 64-bit entry shares (loader type, command line,
 * ramdisk, e820 map, RSDP if with_rsdp) and writes it to X86_ZERO_PAGE_ADDR. bp->hdr must hold
 * the setup header already. Returns 0 or -ENOMEM. */
int x86_loader_put_zero_page(struct guest_mem *mem, struct boot_params *bp,
                             const struct x86_boot_config *cfg, const struct x86_boot_info *info,
                             bool with_rsdp);

/* Format back-ends, called by x86_load_kernel() once the magic has matched. Same contract. */
int x86_bzimage_load(struct guest_mem *mem, const struct x86_boot_config *cfg,
                     struct x86_boot_info *info, char *err, size_t errlen);
int x86_elf_load(struct guest_mem *mem, const struct x86_boot_config *cfg,
                 struct x86_boot_info *info, char *err, size_t errlen);

#endif
