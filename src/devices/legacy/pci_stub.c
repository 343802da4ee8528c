/* pci_stub.c: PCI configuration mechanism #1 ports behind which no device ever answers. */
#include <string.h>

#include "devices/legacy/legacy.h"

#define PCI_ADDR_PORT 0 /* 0xcf8, dword only */
/* Writable bits of CONFIG_ADDRESS: enable (31), bus/device/function/register (23:2). Linux's
 * pci_check_type1() writes 0x80000000 and expects to read it back. */
#define PCI_ADDR_MASK 0x80fffffcU

/* machine.c registers the stub with no state of its own, and there is one VM per process. */
static _Atomic uint32_t pci_address;

void pci_stub_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    uint32_t val;

    (void)opaque;
    if (offset == PCI_ADDR_PORT && len == 4) {
        if (is_write) {
            memcpy(&val, data, 4); /* x86 is little-endian, as is the port */
            pci_address = val & PCI_ADDR_MASK;
        } else {
            val = pci_address;
            memcpy(data, &val, 4);
        }
        return;
    }
    /* Byte and word accesses to 0xcf8..0xcfb are not mechanism #1; the data window
     * 0xcfc..0xcff reads as all-ones, "no device", whatever the address says. */
    if (!is_write)
        memset(data, 0xff, len);
}
