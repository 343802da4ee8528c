/* elf.c: loads an ELF64 vmlinux: at its PVH entry when it carries the Xen PHYS32_ENTRY note, else
 * at its 64-bit entry with a zero page built from scratch (docs/boot.md). */
#include <elf.h>
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "lib/lib.h"
#include "loader_internal.h"
#include "pvh.h"

#define ELF_MAX_PHDRS     64
#define KERNEL_VIRT_START 0xffffffff80000000ULL /* __START_KERNEL_map: e_entry is virtual */
/* The PVH area holds the start info, one module entry, then the memory map up to the zero page. */
#define PVH_MODLIST_ADDR  (X86_PVH_INFO_ADDR + 0x40)
#define PVH_MEMMAP_ADDR   (X86_PVH_INFO_ADDR + 0x80)
#define PVH_MEMMAP_MAX    ((X86_ZERO_PAGE_ADDR - PVH_MEMMAP_ADDR) / 24)
#define ELF_CMDLINE_LIMIT 2047 /* Linux x86 COMMAND_LINE_SIZE - 1: longer lines are cut */

struct elf_image {
    Elf64_Ehdr eh;
    Elf64_Phdr ph[ELF_MAX_PHDRS];
    uint64_t pvh_entry; /* 0 when there is no PVH note */
};

static int check_ehdr(const uint8_t *k, size_t len, struct elf_image *im, char *err, size_t errlen)
{
    const Elf64_Ehdr *eh = &im->eh;
    uint64_t table;

    if (len < sizeof(*eh))
        return x86_loader_fail(err, errlen, -EINVAL,
                               "ELF: file is %zu bytes, shorter than an ELF64 header (%zu)", len,
                               sizeof(*eh));
    memcpy(&im->eh, k, sizeof(*eh));
    if (eh->e_ident[EI_CLASS] != ELFCLASS64)
        return x86_loader_fail(err, errlen, -EINVAL,
                               "ELF: class %u is not ELFCLASS64; kiln loads only 64-bit kernels",
                               eh->e_ident[EI_CLASS]);
    if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
        return x86_loader_fail(err, errlen, -EINVAL,
                               "ELF: data encoding %u is not little-endian (1)",
                               eh->e_ident[EI_DATA]);
    if (eh->e_ident[EI_VERSION] != EV_CURRENT || eh->e_version != EV_CURRENT)
        return x86_loader_fail(err, errlen, -EINVAL, "ELF: version %u is not EV_CURRENT (1)",
                               eh->e_version);
    if (eh->e_machine != EM_X86_64)
        return x86_loader_fail(err, errlen, -EINVAL, "ELF: machine %u is not x86-64 (%u)",
                               eh->e_machine, EM_X86_64);
    if (eh->e_type != ET_EXEC)
        return x86_loader_fail(err, errlen, -EINVAL,
                               "ELF: type %u is not ET_EXEC (2); a kernel is a static executable",
                               eh->e_type);
    if (eh->e_phentsize != sizeof(Elf64_Phdr))
        return x86_loader_fail(err, errlen, -EINVAL, "ELF: program header entry size %u is not %zu",
                               eh->e_phentsize, sizeof(Elf64_Phdr));
    if (eh->e_phnum == 0 || eh->e_phnum > ELF_MAX_PHDRS)
        return x86_loader_fail(err, errlen, -EINVAL,
                               "ELF: %u program headers; kiln accepts 1 to %u", eh->e_phnum,
                               ELF_MAX_PHDRS);
    table = (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
    if (!range_within(eh->e_phoff, table, len))
        return x86_loader_fail(err, errlen, -EINVAL,
                               "ELF: program headers [%#llx,+%#llx) lie outside the %zu-byte file",
                               (unsigned long long)eh->e_phoff, (unsigned long long)table, len);
    memcpy(im->ph, k + eh->e_phoff, table);
    return 0;
}

/* The one message for a segment whose bytes [p_offset, +p_filesz) are not all in the file. */
static int past_end(const Elf64_Phdr *p, unsigned i, const char *kind, const char *range,
                    size_t len, char *err, size_t errlen)
{
    return x86_loader_fail(
        err, errlen, -EINVAL, "ELF: %s %u%s [%#llx,+%#llx) runs past the end of the %zu-byte file",
        kind, i, range, (unsigned long long)p->p_offset, (unsigned long long)p->p_filesz, len);
}

static int check_loads(struct guest_mem *mem, size_t len, struct elf_image *im,
                       struct x86_boot_info *info, char *err, size_t errlen)
{
    uint64_t lo = UINT64_MAX, hi = 0, low_end = guest_mem_low_end(mem);

    for (unsigned i = 0; i < im->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &im->ph[i];

        if (p->p_type != PT_LOAD || p->p_memsz == 0)
            continue;
        if (p->p_filesz > p->p_memsz)
            return x86_loader_fail(err, errlen, -EINVAL,
                                   "ELF: segment %u has p_filesz %#llx larger than p_memsz %#llx",
                                   i, (unsigned long long)p->p_filesz,
                                   (unsigned long long)p->p_memsz);
        if (!range_within(p->p_offset, p->p_filesz, len))
            return past_end(p, i, "segment", " file range", len, err, errlen);
        /* Below the MMIO hole only: PVH starts with paging off and the 64-bit entry's identity
         * map ends at 4 GiB, so a kernel above the hole could not run. */
        if (p->p_paddr < X86_HIMEM_START || !range_within(p->p_paddr, p->p_memsz, low_end) ||
            !guest_mem_ptr(mem, p->p_paddr, p->p_memsz))
            return x86_loader_fail(err, errlen, -ENOMEM,
                                   "ELF: segment %u [%#llx,+%#llx) lies outside guest memory "
                                   "(kernels load between 1 MiB and %#llx)",
                                   i, (unsigned long long)p->p_paddr,
                                   (unsigned long long)p->p_memsz, (unsigned long long)low_end);
        if (p->p_paddr < lo)
            lo = p->p_paddr;
        if (p->p_paddr + p->p_memsz > hi)
            hi = p->p_paddr + p->p_memsz;
    }
    if (hi == 0)
        return x86_loader_fail(err, errlen, -EINVAL, "ELF: no loadable (PT_LOAD) segment");
    info->kernel_start = lo;
    info->kernel_end = hi;
    return 0;
}

/* Scans one PT_NOTE segment for the Xen PHYS32_ENTRY note. Notes are padded to 4 bytes, or to
 * 8 in a segment aligned to 8 (the gABI rule readelf follows). */
static int scan_notes(const uint8_t *k, const Elf64_Phdr *p, unsigned seg, struct elf_image *im,
                      char *err, size_t errlen)
{
    uint64_t align = p->p_align == 8 ? 8 : 4, off = 0;
    const uint8_t *base = k + p->p_offset;

    while (p->p_filesz - off >= 12) {
        Elf64_Nhdr nh;
        uint64_t name_len, desc_off, step;

        memcpy(&nh, base + off, sizeof(nh));
        name_len = ALIGN_UP((uint64_t)nh.n_namesz, align);
        desc_off = off + 12 + name_len;
        if (desc_off > p->p_filesz || nh.n_descsz > p->p_filesz - desc_off)
            return x86_loader_fail(err, errlen, -EINVAL,
                                   "ELF: note at offset %#llx of segment %u runs past its end",
                                   (unsigned long long)off, seg);
        if (nh.n_namesz == 4 && !memcmp(base + off + 12, "Xen", 4) &&
            nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY) {
            uint32_t e32;
            uint64_t e64;

            /* The PVH spec says 32 bits; Linux emits a pointer-sized (8-byte) value. */
            if (nh.n_descsz == 4) {
                memcpy(&e32, base + desc_off, 4);
                e64 = e32;
            } else if (nh.n_descsz == 8) {
                memcpy(&e64, base + desc_off, 8);
            } else {
                return x86_loader_fail(err, errlen, -EINVAL,
                                       "ELF: Xen PHYS32_ENTRY note holds %u bytes; expected 4 or 8",
                                       nh.n_descsz);
            }
            if (e64 == 0 || e64 > UINT32_MAX)
                return x86_loader_fail(err, errlen, -EINVAL,
                                       "ELF: PVH entry %#llx is not a non-zero 32-bit address",
                                       (unsigned long long)e64);
            im->pvh_entry = e64;
        }
        step = desc_off - off + ALIGN_UP((uint64_t)nh.n_descsz, align);
        if (step > p->p_filesz - off)
            break; /* the last note's padding may be missing */
        off += step;
    }
    return 0;
}

static int find_pvh_entry(const uint8_t *k, size_t len, struct elf_image *im, char *err,
                          size_t errlen)
{
    for (unsigned i = 0; i < im->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &im->ph[i];
        int ret;

        if (p->p_type != PT_NOTE)
            continue;
        if (!range_within(p->p_offset, p->p_filesz, len))
            return past_end(p, i, "note segment", "", len, err, errlen);
        ret = scan_notes(k, p, i, im, err, errlen);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Maps an entry point to a guest-physical address inside a loaded segment: physical as given,
 * or (a vmlinux linked at __START_KERNEL_map) virtual, translated by its segment's vaddr-paddr. */
static int entry_paddr(const struct elf_image *im, uint64_t entry, bool maybe_virtual,
                       uint64_t *out)
{
    for (unsigned i = 0; i < im->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &im->ph[i];
        uint64_t base = p->p_paddr;

        if (p->p_type != PT_LOAD || p->p_memsz == 0)
            continue;
        if (maybe_virtual && entry >= KERNEL_VIRT_START)
            base = p->p_vaddr;
        if (entry >= base && entry - base < p->p_memsz) {
            *out = p->p_paddr + (entry - base);
            return 0;
        }
    }
    return -EINVAL;
}

static void copy_segments(struct guest_mem *mem, const uint8_t *k, const struct elf_image *im)
{
    for (unsigned i = 0; i < im->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &im->ph[i];
        uint8_t *dst;
        int ret;

        if (p->p_type != PT_LOAD || p->p_memsz == 0)
            continue;
        dst = guest_mem_ptr(mem, p->p_paddr, p->p_memsz); /* checked in check_loads() */
        assert(dst);
        ret = guest_mem_write(mem, p->p_paddr, k + p->p_offset, p->p_filesz);
        assert(ret == 0);
        (void)ret;
        memset(dst + p->p_filesz, 0, p->p_memsz - p->p_filesz); /* .bss */
    }
}

static int put_start_info(struct guest_mem *mem, const struct x86_boot_config *cfg,
                          const struct x86_boot_info *info)
{
    struct boot_e820_entry e820[PVH_MEMMAP_MAX];
    struct hvm_memmap_table_entry map[PVH_MEMMAP_MAX];
    struct hvm_modlist_entry mod = {.paddr = info->initrd_start, .size = info->initrd_size};
    struct hvm_start_info si = {
        .magic = HVM_START_MAGIC_VALUE,
        .version = HVM_START_INFO_VERSION,
        .cmdline_paddr = X86_CMDLINE_ADDR,
        .rsdp_paddr = cfg->rsdp_gpa,
        .memmap_paddr = PVH_MEMMAP_ADDR,
    };
    void *si_dst = guest_mem_ptr(mem, X86_PVH_INFO_ADDR, sizeof(si));
    void *mod_dst = guest_mem_ptr(mem, PVH_MODLIST_ADDR, sizeof(mod));
    void *map_dst = guest_mem_ptr(mem, PVH_MEMMAP_ADDR, sizeof(map));

    if (!si_dst || !mod_dst || !map_dst)
        return -ENOMEM;
    si.memmap_entries = x86_e820_build(mem, e820, PVH_MEMMAP_MAX);
    memset(map, 0, sizeof(map));
    for (unsigned i = 0; i < si.memmap_entries; i++) {
        map[i].addr = e820[i].addr;
        map[i].size = e820[i].size;
        map[i].type = e820[i].type; /* XEN_HVM_MEMMAP_TYPE_* share the e820 values */
    }
    if (info->initrd_size) {
        si.nr_modules = 1;
        si.modlist_paddr = PVH_MODLIST_ADDR;
    }
    memcpy(si_dst, &si, sizeof(si));
    memcpy(mod_dst, &mod, sizeof(mod));
    memcpy(map_dst, map, sizeof(map));
    return 0;
}

/* A zero page as a boot loader would leave it for a bzImage of protocol 2.15. */
static int put_zero_page(struct guest_mem *mem, const struct x86_boot_config *cfg,
                         const struct x86_boot_info *info)
{
    struct boot_params bp;

    memset(&bp, 0, sizeof(bp));
    bp.hdr.boot_flag = 0xaa55;
    bp.hdr.header = 0x53726448; /* "HdrS" */
    bp.hdr.version = 0x020f;
    bp.hdr.loadflags = LOADED_HIGH;
    bp.hdr.kernel_alignment = 0x1000000;
    bp.hdr.cmdline_size = ELF_CMDLINE_LIMIT;
    bp.hdr.initrd_addr_max = (uint32_t)(X86_INITRD_LIMIT_DEFAULT - 1);
    bp.hdr.xloadflags = XLF_KERNEL_64;
    return x86_loader_put_zero_page(mem, &bp, cfg, info, true);
}

int x86_elf_load(struct guest_mem *mem, const struct x86_boot_config *cfg,
                 struct x86_boot_info *info, char *err, size_t errlen)
{
    const uint8_t *k = cfg->kernel;
    struct elf_image im;
    uint64_t entry;
    int ret;

    memset(&im, 0, sizeof(im));
    ret = check_ehdr(k, cfg->kernel_len, &im, err, errlen);
    if (ret == 0)
        ret = check_loads(mem, cfg->kernel_len, &im, info, err, errlen);
    if (ret == 0)
        ret = find_pvh_entry(k, cfg->kernel_len, &im, err, errlen);
    if (ret < 0)
        return ret;
    if (im.pvh_entry) {
        if (entry_paddr(&im, im.pvh_entry, false, &entry) < 0)
            return x86_loader_fail(err, errlen, -EINVAL,
                                   "ELF: PVH entry %#llx is not inside any loadable segment",
                                   (unsigned long long)im.pvh_entry);
    } else if (entry_paddr(&im, im.eh.e_entry, true, &entry) < 0) {
        return x86_loader_fail(err, errlen, -EINVAL,
                               "ELF: entry point %#llx is not inside any loadable segment",
                               (unsigned long long)im.eh.e_entry);
    }
    /* No setup header states the limit; on both entries Linux x86 keeps COMMAND_LINE_SIZE. */
    ret = x86_loader_put_cmdline(mem, cfg->cmdline, ELF_CMDLINE_LIMIT, err, errlen);
    if (ret == 0)
        ret = x86_loader_put_initrd(mem, cfg, X86_INITRD_LIMIT_DEFAULT, info, err, errlen);
    if (ret < 0)
        return ret;
    copy_segments(mem, k, &im);
    info->entry = entry;
    if (im.pvh_entry) {
        info->mode = X86_ENTRY_PVH;
        info->boot_struct = X86_PVH_INFO_ADDR;
        info->format = "ELF vmlinux (PVH)";
        ret = put_start_info(mem, cfg, info);
    } else {
        info->mode = X86_ENTRY_LINUX64;
        info->boot_struct = X86_ZERO_PAGE_ADDR;
        info->format = "ELF vmlinux (64-bit entry)";
        ret = put_zero_page(mem, cfg, info);
    }
    if (ret < 0)
        return x86_loader_fail(err, errlen, ret,
                               "no guest RAM for the boot structures below 1 MiB");
    return 0;
}
