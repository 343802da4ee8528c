/* pvh.h: the Xen PVH boot ABI (start info, module list, memory map), as the PVH spec fixes it. */
#ifndef KILN_X86_PVH_H
#define KILN_X86_PVH_H

#include <stdint.h>

/* ELF note (owner "Xen") carrying the 32-bit physical entry point of a PVH-capable kernel. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

#define HVM_START_MAGIC_VALUE  0x336ec578u
#define HVM_START_INFO_VERSION 1 /* version 1 adds the memory map */

#define XEN_HVM_MEMMAP_TYPE_RAM      1 /* same values as e820 types */
#define XEN_HVM_MEMMAP_TYPE_RESERVED 2

/* Placed at the address passed in EBX at entry. */
struct hvm_start_info {
    uint32_t magic;          /* HVM_START_MAGIC_VALUE */
    uint32_t version;        /* HVM_START_INFO_VERSION */
    uint32_t flags;          /* SIF_* flags; kiln sets none */
    uint32_t nr_modules;     /* entries at modlist_paddr */
    uint64_t modlist_paddr;  /* array of struct hvm_modlist_entry */
    uint64_t cmdline_paddr;  /* NUL-terminated kernel command line, 0 for none */
    uint64_t rsdp_paddr;     /* ACPI RSDP, 0 for none */
    uint64_t memmap_paddr;   /* array of struct hvm_memmap_table_entry (version >= 1) */
    uint32_t memmap_entries; /* entries at memmap_paddr */
    uint32_t reserved;       /* must be zero */
};
_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info is 56 bytes");

struct hvm_modlist_entry {
    uint64_t paddr;         /* module (for Linux: the initrd) */
    uint64_t size;          /* bytes */
    uint64_t cmdline_paddr; /* module command line, 0 for none */
    uint64_t reserved;      /* must be zero */
};
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry is 32 bytes");

struct hvm_memmap_table_entry {
    uint64_t addr;     /* start of the region */
    uint64_t size;     /* bytes */
    uint32_t type;     /* XEN_HVM_MEMMAP_TYPE_* */
    uint32_t reserved; /* must be zero */
};
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry is 24 bytes");

#endif
