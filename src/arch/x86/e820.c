/* e820.c: the guest's e820 memory map: low RAM, the EBDA/BIOS hole, RAM up to the MMIO hole and
 * RAM above 4 GiB (docs/boot.md). */
#include <asm/e820.h>

#include "lib/lib.h"
#include "x86.h"

static unsigned add(struct boot_e820_entry *out, unsigned n, unsigned max, uint64_t addr,
                    uint64_t size, uint32_t type)
{
    if (n >= max || size == 0)
        return n;
    out[n].addr = addr;
    out[n].size = size;
    out[n].type = type;
    return n + 1;
}

unsigned x86_e820_build(const struct guest_mem *mem, struct boot_e820_entry *out, unsigned max)
{
    uint64_t low_end = guest_mem_low_end(mem);
    unsigned n = 0;

    /* [EBDA, 1 MiB) holds the MP table and ACPI tables: reserved, so Linux keeps it intact. */
    n = add(out, n, max, 0, low_end < X86_EBDA_START ? low_end : X86_EBDA_START, E820_RAM);
    if (low_end > X86_EBDA_START)
        n = add(out, n, max, X86_EBDA_START, X86_HIMEM_START - X86_EBDA_START, E820_RESERVED);
    if (low_end > X86_HIMEM_START)
        n = add(out, n, max, X86_HIMEM_START, low_end - X86_HIMEM_START, E820_RAM);
    for (unsigned i = 1; i < mem->nregions; i++)
        n = add(out, n, max, mem->regions[i].gpa, mem->regions[i].size, E820_RAM);
    return n;
}
