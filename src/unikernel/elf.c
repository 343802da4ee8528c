/* elf.c: checks and loads a unikernel's static ELF64 at its linked physical addresses, and reads
 * its Kiln ABI note (docs/unikernel.md). Every offset and size in the file is checked. */
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/lib.h"
#include "uk.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

__attribute__((format(printf, 4, 5))) static int refuse(char *err, size_t errlen, int ret,
                                                        const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return ret;
}

static int check_header(const Elf64_Ehdr *eh, size_t len, char *err, size_t errlen)
{
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
        return refuse(err, errlen, -EINVAL, "not an ELF file (no \\177ELF magic)");
    if (eh->e_ident[EI_CLASS] != ELFCLASS64)
        return refuse(err, errlen, -EINVAL, "ELF class %u is not ELFCLASS64 (2)",
                      eh->e_ident[EI_CLASS]);
    if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
        return refuse(err, errlen, -EINVAL, "ELF data encoding %u is not little-endian (1)",
                      eh->e_ident[EI_DATA]);
    if (eh->e_ident[EI_VERSION] != EV_CURRENT || eh->e_version != EV_CURRENT)
        return refuse(err, errlen, -EINVAL, "ELF version %u is not EV_CURRENT (1)", eh->e_version);
    if (eh->e_machine != EM_X86_64)
        return refuse(err, errlen, -EINVAL, "ELF machine %u is not x86-64 (%u)", eh->e_machine,
                      EM_X86_64);
    if (eh->e_type == ET_DYN)
        return refuse(err, errlen, -EINVAL,
                      "ELF type ET_DYN: a dynamic or position-independent executable; a "
                      "unikernel is a static ET_EXEC (link with -static -no-pie)");
    if (eh->e_type != ET_EXEC)
        return refuse(err, errlen, -EINVAL, "ELF type %u is not ET_EXEC (2)", eh->e_type);
    if (eh->e_phentsize != sizeof(Elf64_Phdr))
        return refuse(err, errlen, -EINVAL, "ELF program header size %u is not %zu",
                      eh->e_phentsize, sizeof(Elf64_Phdr));
    if (eh->e_phnum == 0 || eh->e_phnum > UK_ELF_MAX_PHDRS)
        return refuse(err, errlen, -EINVAL, "ELF has %u program headers; kiln accepts 1 to %u",
                      eh->e_phnum, UK_ELF_MAX_PHDRS);
    if (!range_within(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), len))
        return refuse(err, errlen, -EINVAL,
                      "ELF program headers at %#llx run past the end of the %zu-byte file",
                      (unsigned long long)eh->e_phoff, len);
    return 0;
}

/* Walks the notes of one PT_NOTE segment: [off, off+size) of the file, already bounds-checked. */
static int read_notes(const uint8_t *elf, uint64_t off, uint64_t size, struct uk_image *img,
                      char *err, size_t errlen)
{
    uint64_t pos = 0;

    while (size - pos >= sizeof(Elf64_Nhdr)) {
        Elf64_Nhdr nh;
        uint64_t name_off, desc_off, next;

        memcpy(&nh, elf + off + pos, sizeof(nh));
        name_off = pos + sizeof(nh);
        desc_off = name_off + ALIGN_UP((uint64_t)nh.n_namesz, 4);
        next = desc_off + ALIGN_UP((uint64_t)nh.n_descsz, 4);
        if (next > size)
            return refuse(err, errlen, -EINVAL,
                          "ELF note at %#llx (name %u, descriptor %u bytes) runs past its "
                          "segment",
                          (unsigned long long)(off + pos), nh.n_namesz, nh.n_descsz);
        if (nh.n_namesz == sizeof(KILN_HVC_NOTE_NAME) && nh.n_type == KILN_HVC_NOTE_ABI &&
            !memcmp(elf + off + name_off, KILN_HVC_NOTE_NAME, sizeof(KILN_HVC_NOTE_NAME))) {
            struct kiln_hvc_note_abi abi;
            if (nh.n_descsz != sizeof(abi))
                return refuse(err, errlen, -EPROTO,
                              "the Kiln ABI note's descriptor is %u bytes, not %zu", nh.n_descsz,
                              sizeof(abi));
            memcpy(&abi, elf + off + desc_off, sizeof(abi));
            img->abi_version = abi.version ? abi.version : UINT32_MAX;
        } else if (nh.n_namesz == 4 && nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY &&
                   !memcmp(elf + off + name_off, "Xen", 4) && nh.n_descsz >= 4) {
            uint32_t entry;
            memcpy(&entry, elf + off + desc_off, 4);
            img->pvh_entry = entry;
        }
        pos = next;
    }
    return 0;
}

static int check_segment(const Elf64_Phdr *p, unsigned i, size_t len, uint64_t mem_size, char *err,
                         size_t errlen)
{
    if (p->p_filesz > p->p_memsz)
        return refuse(err, errlen, -EINVAL,
                      "ELF segment %u: file size %#llx exceeds its memory "
                      "size %#llx",
                      i, (unsigned long long)p->p_filesz, (unsigned long long)p->p_memsz);
    if (!range_within(p->p_offset, p->p_filesz, len))
        return refuse(err, errlen, -EINVAL,
                      "ELF segment %u [%#llx,+%#llx) runs past the end of the %zu-byte file", i,
                      (unsigned long long)p->p_offset, (unsigned long long)p->p_filesz, len);
    if (p->p_vaddr != p->p_paddr)
        return refuse(err, errlen, -EINVAL,
                      "ELF segment %u: virtual address %#llx differs from its physical %#llx; "
                      "unikernels are identity-mapped",
                      i, (unsigned long long)p->p_vaddr, (unsigned long long)p->p_paddr);
    if (p->p_paddr < KILN_HVC_LOAD_MIN)
        return refuse(err, errlen, -EINVAL,
                      "ELF segment %u at %#llx lies below %#x, where kiln keeps its page tables "
                      "and boot info",
                      i, (unsigned long long)p->p_paddr, KILN_HVC_LOAD_MIN);
    if (!range_within(p->p_paddr, p->p_memsz, mem_size))
        return refuse(err, errlen, -ENOMEM,
                      "ELF segment %u [%#llx,+%#llx) does not fit in %llu MiB of guest memory "
                      "(raise --mem)",
                      i, (unsigned long long)p->p_paddr, (unsigned long long)p->p_memsz,
                      (unsigned long long)(mem_size >> 20));
    return 0;
}

/* Checks every program header; fills img. Segments are then pairwise disjoint. */
static int check_phdrs(const uint8_t *elf, size_t len, const Elf64_Ehdr *eh, const Elf64_Phdr *ph,
                       uint64_t mem_size, struct uk_image *img, char *err, size_t errlen)
{
    bool entry_ok = false;
    int ret;

    for (unsigned i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *p = &ph[i];

        if (p->p_type == PT_INTERP || p->p_type == PT_DYNAMIC)
            return refuse(err, errlen, -EINVAL,
                          "ELF has a %s segment: it is dynamically linked; a unikernel must be "
                          "static",
                          p->p_type == PT_INTERP ? "PT_INTERP" : "PT_DYNAMIC");
        if (p->p_type == PT_NOTE) {
            if (!range_within(p->p_offset, p->p_filesz, len))
                return refuse(err, errlen, -EINVAL,
                              "ELF note segment %u runs past the end of the %zu-byte file", i, len);
            ret = read_notes(elf, p->p_offset, p->p_filesz, img, err, errlen);
            if (ret < 0)
                return ret;
            continue;
        }
        if (p->p_type != PT_LOAD || p->p_memsz == 0)
            continue;
        ret = check_segment(p, i, len, mem_size, err, errlen);
        if (ret < 0)
            return ret;
        for (unsigned j = 0; j < i; j++) {
            const Elf64_Phdr *q = &ph[j];
            if (q->p_type != PT_LOAD || q->p_memsz == 0)
                continue;
            if (p->p_paddr < q->p_paddr + q->p_memsz && q->p_paddr < p->p_paddr + p->p_memsz)
                return refuse(err, errlen, -EINVAL, "ELF segments %u and %u overlap", j, i);
        }
        if ((p->p_flags & PF_X) && eh->e_entry >= p->p_paddr &&
            eh->e_entry - p->p_paddr < p->p_memsz)
            entry_ok = true;
        if (p->p_paddr + p->p_memsz > img->image_end)
            img->image_end = p->p_paddr + p->p_memsz;
        img->nsegments++;
    }
    if (img->nsegments == 0)
        return refuse(err, errlen, -EINVAL, "ELF has no loadable segment");
    if (!entry_ok)
        return refuse(err, errlen, -EINVAL,
                      "ELF entry point %#llx is not inside an executable loadable segment",
                      (unsigned long long)eh->e_entry);
    return 0;
}

int uk_elf_load(struct guest_mem *mem, uint64_t mem_size, const uint8_t *elf, size_t len,
                struct uk_image *img, char *err, size_t errlen)
{
    Elf64_Ehdr eh;
    Elf64_Phdr ph[UK_ELF_MAX_PHDRS];
    int ret;

    memset(img, 0, sizeof(*img));
    if (len < sizeof(eh))
        return refuse(err, errlen, -EINVAL,
                      "file is %zu bytes, shorter than an ELF64 header (%zu): truncated?", len,
                      sizeof(eh));
    memcpy(&eh, elf, sizeof(eh));
    ret = check_header(&eh, len, err, errlen);
    if (ret < 0)
        return ret;
    memcpy(ph, elf + eh.e_phoff, eh.e_phnum * sizeof(Elf64_Phdr));
    ret = check_phdrs(elf, len, &eh, ph, mem_size, img, err, errlen);
    if (ret < 0)
        return ret;
    if (img->abi_version == 0)
        return refuse(err, errlen, -EPROTO,
                      "no Kiln ABI note (name \"%s\", type %#x): not built for kiln unikernel "
                      "mode (link with guest/unikernel's runtime)",
                      KILN_HVC_NOTE_NAME, KILN_HVC_NOTE_ABI);
    if (img->abi_version != KILN_HVC_VERSION)
        return refuse(err, errlen, -EPROTO,
                      "built for hypercall ABI version %u; this kiln speaks version %u",
                      img->abi_version == UINT32_MAX ? 0 : img->abi_version, KILN_HVC_VERSION);
    img->entry = eh.e_entry;
    if (!mem)
        return 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        uint8_t *dst;

        if (p->p_type != PT_LOAD || p->p_memsz == 0)
            continue;
        /* check_segment() bounded it by mem_size; the accessor is the authority on mem. */
        dst = guest_mem_ptr(mem, p->p_paddr, p->p_memsz);
        if (!dst)
            return refuse(err, errlen, -ENOMEM, "ELF segment %u does not fit in guest memory", i);
        ret = guest_mem_write(mem, p->p_paddr, elf + p->p_offset, p->p_filesz);
        if (ret < 0)
            return refuse(err, errlen, ret, "cannot copy ELF segment %u", i);
        memset(dst + p->p_filesz, 0, p->p_memsz - p->p_filesz);
    }
    return 0;
}
