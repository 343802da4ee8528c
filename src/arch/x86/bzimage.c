/* bzimage.c: loads a Linux bzImage for the 64-bit boot protocol (docs/boot.md): validates the
 * setup header, places the protected-mode payload and fills the zero page. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "lib/lib.h"
#include "loader_internal.h"

#define HDR_OFFSET     0x1f1  /* struct setup_header inside the image and the zero page */
#define HDR_MIN_END    0x264  /* the header must reach past init_size (0x260..0x263) */
#define PROTO_MIN      0x020c /* 2.12: xloadflags, hence XLF_KERNEL_64 */
#define PROTO_RSDP     0x020e /* 2.14: boot_params.acpi_rsdp_addr */
#define ALIGN_MAX      (1ULL << 30)
#define ENTRY64_OFFSET 0x200 /* 64-bit entry: load address + 0x200 */

struct layout {
    uint64_t setup_size;   /* bytes of real-mode setup before the payload */
    uint64_t payload_size; /* protected-mode payload, syssize * 16 */
    uint64_t load;         /* where the payload is copied */
    uint64_t runtime;      /* where the kernel decompresses itself and runs */
};

static int check_header(const struct setup_header *h, size_t len, struct layout *l, char *err,
                        size_t errlen)
{
    unsigned sects = h->setup_sects ? h->setup_sects : 4; /* 0 means 4, for old kernels */

    if (!(h->xloadflags & XLF_KERNEL_64))
        return x86_loader_fail(err, errlen, -EINVAL,
                               "bzImage: no 64-bit entry point (XLF_KERNEL_64 clear in xloadflags "
                               "%#x); kiln boots only 64-bit kernels",
                               h->xloadflags);
    if (!(h->loadflags & LOADED_HIGH))
        return x86_loader_fail(err, errlen, -EINVAL,
                               "bzImage: loadflags %#x lack LOADED_HIGH; a zImage loaded at "
                               "0x10000 is not supported",
                               h->loadflags);
    l->setup_size = (uint64_t)(sects + 1) * 512;
    if (l->setup_size > len)
        return x86_loader_fail(err, errlen, -EINVAL,
                               "bzImage: setup_sects %u means %llu bytes of setup, but the file "
                               "is only %zu bytes",
                               sects, (unsigned long long)l->setup_size, len);
    l->payload_size = (uint64_t)h->syssize * 16;
    if (l->payload_size == 0 || l->payload_size > len - l->setup_size)
        return x86_loader_fail(err, errlen, -EINVAL,
                               "bzImage: syssize %#x means a payload of %llu bytes, but %llu "
                               "bytes follow the setup",
                               h->syssize, (unsigned long long)l->payload_size,
                               (unsigned long long)(len - l->setup_size));
    if (h->init_size < l->payload_size)
        return x86_loader_fail(err, errlen, -EINVAL,
                               "bzImage: init_size %#x is smaller than the %llu-byte payload",
                               h->init_size, (unsigned long long)l->payload_size);
    if (h->relocatable_kernel &&
        (h->kernel_alignment < X86_PAGE_SIZE || h->kernel_alignment > ALIGN_MAX ||
         (h->kernel_alignment & (h->kernel_alignment - 1))))
        return x86_loader_fail(err, errlen, -EINVAL,
                               "bzImage: kernel_alignment %#x is not a power of two between "
                               "4 KiB and 1 GiB",
                               h->kernel_alignment);
    if (h->pref_address < X86_HIMEM_START)
        return x86_loader_fail(err, errlen, -EINVAL, "bzImage: pref_address %#llx is below 1 MiB",
                               (unsigned long long)h->pref_address);
    return 0;
}

/* Decides the load address (docs/boot.md): a relocatable kernel is loaded where it will run,
 * pref_address rounded up to kernel_alignment (the runtime start the boot protocol defines for
 * a load address at or below pref_address), so it need not move itself; a fixed kernel is loaded
 * at 1 MiB and runs at pref_address. Either way [runtime, runtime + init_size) must be RAM. */
static int place_kernel(struct guest_mem *mem, const struct setup_header *h, struct layout *l,
                        struct x86_boot_info *info, char *err, size_t errlen)
{
    uint64_t low_end = guest_mem_low_end(mem), run_end;
    char need[32], ram[32];

    if (h->pref_address >= low_end)
        goto too_small;
    if (h->relocatable_kernel) {
        l->runtime = ALIGN_UP(h->pref_address, (uint64_t)h->kernel_alignment);
        l->load = l->runtime;
    } else {
        l->runtime = h->pref_address;
        l->load = X86_HIMEM_START;
    }
    run_end = l->runtime + h->init_size;
    info->kernel_start = l->load < l->runtime ? l->load : l->runtime;
    info->kernel_end = l->load + l->payload_size > run_end ? l->load + l->payload_size : run_end;
    if (info->kernel_end <= low_end && guest_mem_ptr(mem, l->load, l->payload_size))
        return 0;
too_small:
    return x86_loader_fail(
        err, errlen, -ENOMEM,
        "bzImage: the kernel needs RAM up to %#llx (pref_address %#llx, init_size %s) but RAM "
        "below the MMIO hole ends at %#llx (%s); give the VM more memory",
        (unsigned long long)(h->pref_address + h->init_size), (unsigned long long)h->pref_address,
        x86_loader_size_str(h->init_size, need, sizeof(need)), (unsigned long long)low_end,
        x86_loader_size_str(low_end, ram, sizeof(ram)));
}

int x86_bzimage_load(struct guest_mem *mem, const struct x86_boot_config *cfg,
                     struct x86_boot_info *info, char *err, size_t errlen)
{
    const uint8_t *k = cfg->kernel;
    size_t len = cfg->kernel_len;
    struct boot_params bp;
    struct setup_header *h = &bp.hdr;
    struct layout l = {0};
    size_t hdr_end, copy;
    uint16_t version;
    int ret;

    /* The version first: an old kernel's header is shorter, and "too old" is the real news. */
    version = len >= 0x208 ? (uint16_t)(k[0x206] | k[0x207] << 8) : 0;
    if (version < PROTO_MIN)
        return x86_loader_fail(
            err, errlen, -EINVAL,
            "bzImage: boot protocol %u.%02u is too old; kiln needs 2.12 or later", version >> 8,
            version & 0xff);
    /* The header ends at 0x202 plus the jump offset at 0x201 (the boot protocol's rule). */
    hdr_end = 0x202 + (size_t)k[0x201];
    if (len < HDR_MIN_END || hdr_end < HDR_MIN_END)
        return x86_loader_fail(err, errlen, -EINVAL,
                               "bzImage: setup header ends at %#zx in a %zu-byte file; protocol "
                               "2.12 needs it to reach %#x",
                               hdr_end < len ? hdr_end : len, len, HDR_MIN_END);
    copy = hdr_end < HDR_OFFSET + sizeof(*h) ? hdr_end - HDR_OFFSET : sizeof(*h);
    if (copy > len - HDR_OFFSET)
        copy = len - HDR_OFFSET;
    memset(&bp, 0, sizeof(bp));
    memcpy(h, k + HDR_OFFSET, copy);

    ret = check_header(h, len, &l, err, errlen);
    if (ret < 0)
        return ret;
    ret = place_kernel(mem, h, &l, info, err, errlen);
    if (ret < 0)
        return ret;
    ret = x86_loader_put_cmdline(mem, cfg->cmdline, h->cmdline_size, err, errlen);
    if (ret < 0)
        return ret;
    ret = x86_loader_put_initrd(mem, cfg, (uint64_t)h->initrd_addr_max + 1, info, err, errlen);
    if (ret < 0)
        return ret;

    ret = guest_mem_write(mem, l.load, k + l.setup_size, l.payload_size);
    assert(ret == 0); /* the range was checked when the layout was chosen */

    /* The real-mode setup code never runs on the 64-bit path, so it gets no heap, and fields
     * that would point at loader data kiln does not provide are cleared. */
    h->loadflags &= (uint8_t) ~(CAN_USE_HEAP | KEEP_SEGMENTS);
    h->heap_end_ptr = 0;
    h->code32_start = (uint32_t)l.load;
    h->setup_data = 0;
    h->hardware_subarch = X86_SUBARCH_PC;
    h->hardware_subarch_data = 0;
    h->ext_loader_ver = 0;
    h->ext_loader_type = 0;
    ret = x86_loader_put_zero_page(mem, &bp, cfg, info, h->version >= PROTO_RSDP);
    if (ret < 0)
        return x86_loader_fail(err, errlen, ret, "no guest RAM for the zero page at %#llx",
                               X86_ZERO_PAGE_ADDR);
    info->mode = X86_ENTRY_LINUX64;
    info->entry = l.load + ENTRY64_OFFSET;
    info->boot_struct = X86_ZERO_PAGE_ADDR;
    info->format = "bzImage";
    return 0;
}
