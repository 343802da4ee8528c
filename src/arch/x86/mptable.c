/* mptable.c: the Intel MultiProcessor Specification 1.4 table (floating pointer and
 * configuration table) for guests booted without ACPI. Layout: docs/platform-tables.md. */
#include <errno.h>
#include <string.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"

#define MP_END           0xa0000ULL /* the EBDA ends where legacy video memory starts */
#define MP_APIC_VERSION  0x14       /* integrated local APIC */
#define MP_IOAPIC_VER    0x11
#define MP_IOAPIC_PINS   24
#define MP_CPU_SIGNATURE 0x600 /* family 6; the guest reads the real one from CPUID */
#define MP_CPU_FEATURES  0x201 /* FPU and APIC present */
#define MP_ISA_IRQS      16

struct __attribute__((packed)) mpf {
    char signature[4]; /* "_MP_" */
    uint32_t config;   /* physical address of the configuration table */
    uint8_t length;    /* in 16-byte units */
    uint8_t spec_rev;
    uint8_t checksum;
    uint8_t feature[5]; /* all zero: a configuration table is present, virtual wire mode */
};

struct __attribute__((packed)) mpc_header {
    char signature[4]; /* "PCMP" */
    uint16_t length;   /* header and entries */
    uint8_t spec_rev;
    uint8_t checksum;
    char oem[8];
    char product[12];
    uint32_t oem_table;
    uint16_t oem_table_size;
    uint16_t count;
    uint32_t lapic;
    uint16_t ext_length;
    uint8_t ext_checksum;
    uint8_t reserved;
};

struct __attribute__((packed)) mpc_cpu {
    uint8_t type, apic_id, apic_version, flags;
    uint32_t signature, features;
    uint32_t reserved[2];
};

struct __attribute__((packed)) mpc_bus {
    uint8_t type, bus_id;
    char bus_type[6];
};

struct __attribute__((packed)) mpc_ioapic {
    uint8_t type, id, version, flags;
    uint32_t address;
};

/* Both I/O and local interrupt assignment entries. */
struct __attribute__((packed)) mpc_intsrc {
    uint8_t type, irq_type;
    uint16_t flags;
    uint8_t src_bus, src_irq, dst_id, dst_pin;
};

_Static_assert(sizeof(struct mpf) == 16 && sizeof(struct mpc_header) == 44, "MP headers");
_Static_assert(sizeof(struct mpc_cpu) == 20 && sizeof(struct mpc_bus) == 8 &&
                   sizeof(struct mpc_ioapic) == 8 && sizeof(struct mpc_intsrc) == 8,
               "MP entries");

enum { MP_CPU = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_IOINT = 3, MP_LINT = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };
#define MP_CPU_ENABLED      1
#define MP_CPU_BSP          2
#define MP_EDGE_ACTIVE_HIGH 0x5 /* polarity 01 (high), trigger 01 (edge) */
#define MP_ALL_LAPICS       0xff

/* The largest table: every CPU, and virtio GSIs 16..23 each needing an entry beyond the ISA
 * IRQs. It must fit in the EBDA below MP_END. */
#define MP_MAX_SIZE                                                                                \
    (sizeof(struct mpf) + sizeof(struct mpc_header) + X86_MAX_CPUS * sizeof(struct mpc_cpu) +      \
     sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic) +                                          \
     (MP_IOAPIC_PINS + 2) * sizeof(struct mpc_intsrc))
_Static_assert(X86_MPTABLE_ADDR + MP_MAX_SIZE <= MP_END, "MP table does not fit in the EBDA");

struct writer {
    uint8_t *buf;
    size_t len, cap;
    uint16_t count;
};

static int put(struct writer *w, const void *entry, size_t n)
{
    if (n > w->cap - w->len)
        return -ENOMEM;
    memcpy(w->buf + w->len, entry, n);
    w->len += n;
    w->count++;
    return 0;
}

static int put_int(struct writer *w, uint8_t type, uint8_t irq_type, uint16_t flags,
                   uint8_t src_irq, uint8_t dst_id, uint8_t dst_pin)
{
    struct mpc_intsrc e = {.type = type,
                           .irq_type = irq_type,
                           .flags = flags,
                           .src_bus = 0,
                           .src_irq = src_irq,
                           .dst_id = dst_id,
                           .dst_pin = dst_pin};
    return put(w, &e, sizeof(e));
}

/* True when an I/O interrupt entry for `gsi` is already in the table (ISA IRQs and earlier
 * virtio devices). */
static bool gsi_listed(const struct x86_platform *plat, unsigned upto, uint32_t gsi)
{
    if (gsi < MP_ISA_IRQS)
        return true;
    for (unsigned i = 0; i < upto; i++) {
        if (plat->virtio[i].gsi == gsi)
            return true;
    }
    return false;
}

static int write_entries(struct writer *w, const struct x86_platform *plat)
{
    const uint8_t ioapic_id = (uint8_t)plat->ncpus; /* after the local APIC ids */
    int ret = 0;

    for (unsigned i = 0; i < plat->ncpus && !ret; i++) {
        struct mpc_cpu cpu = {.type = MP_CPU,
                              .apic_id = (uint8_t)i,
                              .apic_version = MP_APIC_VERSION,
                              .flags = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0),
                              .signature = MP_CPU_SIGNATURE,
                              .features = MP_CPU_FEATURES};
        ret = put(w, &cpu, sizeof(cpu));
    }
    struct mpc_bus bus = {.type = MP_BUS, .bus_id = 0, .bus_type = {'I', 'S', 'A', ' ', ' ', ' '}};
    struct mpc_ioapic ioapic = {.type = MP_IOAPIC,
                                .id = ioapic_id,
                                .version = MP_IOAPIC_VER,
                                .flags = 1 /* enabled */,
                                .address = (uint32_t)X86_IOAPIC_ADDR};
    if (!ret)
        ret = put(w, &bus, sizeof(bus));
    if (!ret)
        ret = put(w, &ioapic, sizeof(ioapic));
    /* ISA IRQ n on IOAPIC pin n: KVM's default GSI routing, which kiln keeps, wires them so. */
    for (unsigned irq = 0; irq < MP_ISA_IRQS && !ret; irq++)
        ret = put_int(w, MP_IOINT, MP_INT, MP_EDGE_ACTIVE_HIGH, (uint8_t)irq, ioapic_id,
                      (uint8_t)irq);
    for (unsigned i = 0; i < plat->nvirtio && !ret; i++) {
        uint32_t gsi = plat->virtio[i].gsi;
        if (!gsi_listed(plat, i, gsi))
            ret = put_int(w, MP_IOINT, MP_INT, MP_EDGE_ACTIVE_HIGH, (uint8_t)gsi, ioapic_id,
                          (uint8_t)gsi);
    }
    /* LINT0 ExtINT and LINT1 NMI on every local APIC, as x86_lapic_init() programs them. */
    if (!ret)
        ret = put_int(w, MP_LINT, MP_EXTINT, 0, 0, MP_ALL_LAPICS, 0);
    if (!ret)
        ret = put_int(w, MP_LINT, MP_NMI, 0, 0, MP_ALL_LAPICS, 1);
    return ret;
}

int x86_mptable_write(struct guest_mem *mem, const struct x86_platform *plat)
{
    const uint64_t cfg_gpa = X86_MPTABLE_ADDR + sizeof(struct mpf);
    struct mpf mpf = {
        .signature = {'_', 'M', 'P', '_'}, .config = (uint32_t)cfg_gpa, .length = 1, .spec_rev = 4};
    struct mpc_header hdr = {
        .signature = {'P', 'C', 'M', 'P'},
        .spec_rev = 4,
        .oem = {'K', 'I', 'L', 'N', ' ', ' ', ' ', ' '},
        .product = {'K', 'I', 'L', 'N', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '},
        .lapic = (uint32_t)X86_LAPIC_ADDR};
    struct writer w;
    uint8_t *base;
    int ret;

    ret = x86_platform_check(plat);
    if (ret < 0)
        return ret;
    base = guest_mem_ptr(mem, X86_MPTABLE_ADDR, MP_END - X86_MPTABLE_ADDR);
    if (!base) {
        log_error("mptable: guest RAM does not cover 0x%llx..0x%llx",
                  (unsigned long long)X86_MPTABLE_ADDR, (unsigned long long)MP_END);
        return -ENOMEM;
    }
    memset(base, 0, MP_END - X86_MPTABLE_ADDR);

    w = (struct writer){.buf = base + sizeof(mpf) + sizeof(hdr),
                        .cap = MP_END - cfg_gpa - sizeof(hdr)};
    ret = write_entries(&w, plat);
    if (ret < 0) {
        log_error("mptable: the table does not fit below 0x%llx", (unsigned long long)MP_END);
        return ret;
    }
    hdr.length = (uint16_t)(sizeof(hdr) + w.len);
    hdr.count = w.count;
    memcpy(base + sizeof(mpf), &hdr, sizeof(hdr));
    base[sizeof(mpf) + offsetof(struct mpc_header, checksum)] =
        x86_table_checksum(base + sizeof(mpf), hdr.length);
    mpf.checksum = x86_table_checksum(&mpf, sizeof(mpf));
    memcpy(base, &mpf, sizeof(mpf));
    return 0;
}
