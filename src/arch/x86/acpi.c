/* acpi.c: the ACPI 6 tables a kiln guest reads: RSDP, XSDT, a hardware-reduced FADT, MADT and an
 * AML DSDT (\_S5, COM1, the virtio-mmio devices). Layout and policy: docs/platform-tables.md. */
#include <errno.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/x86.h"
#include "lib/lib.h"

#define OEM_ID      "KILN  "
#define CREATOR_ID  "KILN"
#define TABLE_ALIGN 16
#define DSDT_MAX    4096

struct __attribute__((packed)) rsdp {
    char signature[8];
    uint8_t checksum; /* over the first 20 bytes (the ACPI 1.0 structure) */
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt_address;
    uint32_t length;
    uint64_t xsdt_address;
    uint8_t extended_checksum; /* over all 36 bytes */
    uint8_t reserved[3];
};
_Static_assert(sizeof(struct rsdp) == 36, "RSDP size");

struct __attribute__((packed)) sdt_header {
    char signature[4];
    uint32_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    char creator_id[4];
    uint32_t creator_revision;
};
_Static_assert(sizeof(struct sdt_header) == 36, "SDT header size");

/* Generic Address Structure. */
struct __attribute__((packed)) gas {
    uint8_t space_id;
    uint8_t bit_width;
    uint8_t bit_offset;
    uint8_t access_size;
    uint64_t address;
};

struct __attribute__((packed)) fadt {
    struct sdt_header h;
    uint32_t firmware_ctrl, dsdt;
    uint8_t reserved0, preferred_pm_profile;
    uint16_t sci_int;
    uint32_t smi_cmd;
    uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
    uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk, pm2_cnt_blk, pm_tmr_blk;
    uint32_t gpe0_blk, gpe1_blk;
    uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len, gpe0_blk_len, gpe1_blk_len;
    uint8_t gpe1_base, cst_cnt;
    uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
    uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
    uint16_t iapc_boot_arch;
    uint8_t reserved1;
    uint32_t flags;
    struct gas reset_reg;
    uint8_t reset_value;
    uint16_t arm_boot_arch;
    uint8_t minor_version;
    uint64_t x_firmware_ctrl, x_dsdt;
    struct gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk, x_pm2_cnt_blk;
    struct gas x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
    struct gas sleep_control, sleep_status;
    char hypervisor_vendor[8];
};
_Static_assert(sizeof(struct fadt) == 276, "FADT (ACPI 6) size");
_Static_assert(offsetof(struct fadt, reset_reg) == 116, "FADT reset register offset");
_Static_assert(offsetof(struct fadt, sleep_control) == 244, "FADT sleep control offset");

#define FADT_F_PWR_BUTTON    (1u << 4) /* no fixed-feature power button */
#define FADT_F_SLP_BUTTON    (1u << 5) /* no fixed-feature sleep button */
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED    (1u << 20)
#define IAPC_VGA_NOT_PRESENT (1u << 2)
#define IAPC_MSI_NOT_PRESENT (1u << 3)
#define GAS_SYSTEM_IO        1
#define GAS_ACCESS_BYTE      1

struct __attribute__((packed)) madt {
    struct sdt_header h;
    uint32_t lapic_address;
    uint32_t flags;
};
#define MADT_PCAT_COMPAT 1u

struct __attribute__((packed)) madt_lapic {
    uint8_t type, length, processor_uid, apic_id;
    uint32_t flags;
};
struct __attribute__((packed)) madt_ioapic {
    uint8_t type, length, ioapic_id, reserved;
    uint32_t address, gsi_base;
};
_Static_assert(sizeof(struct madt_lapic) == 8 && sizeof(struct madt_ioapic) == 12, "MADT");

static void header(struct sdt_header *h, const char *sig, uint32_t len, uint8_t rev,
                   const char *table_id)
{
    memcpy(h->signature, sig, 4);
    h->length = len;
    h->revision = rev;
    memcpy(h->oem_id, OEM_ID, 6);
    memcpy(h->oem_table_id, table_id, 8);
    h->oem_revision = 1;
    memcpy(h->creator_id, CREATOR_ID, 4);
    h->creator_revision = 1;
}

/* The tables are laid out one after the other in a host view of [X86_ACPI_ADDR, X86_ACPI_END). */
struct layout {
    uint8_t *base;
    uint64_t next; /* offset of the next free byte */
};

/* Copies a finished table (checksum at byte 9) into the area; returns its guest address or 0. */
static uint64_t place(struct layout *l, void *table, uint32_t len)
{
    uint64_t off = ALIGN_UP(l->next, (uint64_t)TABLE_ALIGN);

    if (!range_within(off, len, X86_ACPI_END - X86_ACPI_ADDR))
        return 0;
    ((struct sdt_header *)table)->checksum = 0;
    ((struct sdt_header *)table)->checksum = x86_table_checksum(table, len);
    memcpy(l->base + off, table, len);
    l->next = off + len;
    return X86_ACPI_ADDR + off;
}

static void build_dsdt(struct aml *a, const struct x86_platform *plat)
{
    uint8_t res_buf[64];
    struct aml res;
    size_t pkg, scope, dev;

    /* \_S5: Linux writes SLP_TYPa from element 0 to the sleep control register on poweroff
     * ((SLP_TYP << 2) | SLP_EN for hardware-reduced ACPI, acpi_hw_extended_sleep). */
    aml_name(a, "_S5_");
    pkg = aml_package(a, 4);
    aml_integer(a, X86_ACPI_S5_SLP_TYP);
    for (int i = 0; i < 3; i++)
        aml_integer(a, 0);
    aml_close(a, pkg);

    scope = aml_scope(a, "\\_SB_");
    /* COM1, so kernels that only trust ACPI for serial ports (8250_pnp) find the console. */
    dev = aml_device(a, "COM1");
    aml_name(a, "_HID");
    aml_eisaid(a, "PNP0501");
    aml_name(a, "_UID");
    aml_integer(a, 0);
    aml_init(&res, res_buf, sizeof(res_buf));
    aml_res_io16(&res, X86_PORT_COM1, 8);
    aml_res_irq_edge_high(&res, X86_IRQ_COM1);
    aml_res_end(&res);
    aml_name(a, "_CRS");
    aml_buffer(a, res.buf, res.len);
    aml_close(a, dev);

    /* One LNRO0005 device per virtio-mmio transport: virtio_mmio binds to these without any
     * virtio_mmio.device= on the command line (as with Firecracker). */
    for (unsigned i = 0; i < plat->nvirtio; i++) {
        const struct x86_virtio_dev *v = &plat->virtio[i];
        char name[5] = {'V', 'I', 'O', "0123456789ABCDEF"[i & 0xf], '\0'};

        dev = aml_device(a, name);
        aml_name(a, "_HID");
        aml_string(a, "LNRO0005");
        aml_name(a, "_UID");
        aml_integer(a, i);
        aml_init(&res, res_buf, sizeof(res_buf));
        aml_res_mem32_fixed(&res, (uint32_t)v->base, (uint32_t)v->size);
        aml_res_irq_edge_high(&res, v->gsi);
        aml_res_end(&res);
        aml_name(a, "_CRS");
        aml_buffer(a, res.buf, res.len);
        aml_close(a, dev);
    }
    aml_close(a, scope);
}

static uint64_t write_fadt(struct layout *l, uint64_t dsdt)
{
    static const struct gas byte_port = {
        .space_id = GAS_SYSTEM_IO, .bit_width = 8, .access_size = GAS_ACCESS_BYTE};
    struct fadt f = {0};

    header(&f.h, "FACP", sizeof(f), 6, "KILNFACP");
    f.dsdt = (uint32_t)dsdt;
    f.x_dsdt = dsdt;
    /* Hardware-reduced: no PM1/GPE blocks, no SCI, no PM timer; sleep and reset go through
     * the three registers below (the acpi_pm device). */
    f.flags = FADT_F_HW_REDUCED | FADT_F_RESET_REG_SUP | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON;
    /* No VGA and no MSI (there is no PCI). The 8042 flag stays clear although kiln answers
     * the i8042 reset command: with it clear Linux skips probing a keyboard and mouse that are
     * not there, and its reboot path still writes 0xFE to port 0x64 after the ACPI reset
     * register. The CMOS RTC is present, so CMOS_RTC_NOT_PRESENT stays clear too. */
    f.iapc_boot_arch = IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_PRESENT;
    f.reset_reg = byte_port;
    f.reset_reg.address = X86_PORT_ACPI_RESET;
    f.reset_value = 1;
    f.minor_version = 5; /* the layout is unchanged from ACPI 6.0 to 6.5 */
    f.sleep_control = byte_port;
    f.sleep_control.address = X86_PORT_ACPI_SLEEP;
    f.sleep_status = byte_port;
    f.sleep_status.address = X86_PORT_ACPI_STATUS;
    memcpy(f.hypervisor_vendor, "KILN\0\0\0\0", 8);
    return place(l, &f, sizeof(f));
}

static uint64_t write_madt(struct layout *l, unsigned ncpus)
{
    uint8_t buf[sizeof(struct madt) + X86_MAX_CPUS * sizeof(struct madt_lapic) +
                sizeof(struct madt_ioapic)] = {0};
    struct madt *m = (struct madt *)buf;
    size_t len = sizeof(*m);

    m->lapic_address = (uint32_t)X86_LAPIC_ADDR;
    m->flags = MADT_PCAT_COMPAT; /* KVM's irqchip includes the two 8259s */
    for (unsigned i = 0; i < ncpus; i++) {
        struct madt_lapic e = {.type = 0,
                               .length = sizeof(e),
                               .processor_uid = (uint8_t)i,
                               .apic_id = (uint8_t)i,
                               .flags = 1 /* enabled */};
        memcpy(buf + len, &e, sizeof(e));
        len += sizeof(e);
    }
    struct madt_ioapic io = {.type = 1,
                             .length = sizeof(io),
                             .ioapic_id = (uint8_t)ncpus,
                             .address = (uint32_t)X86_IOAPIC_ADDR,
                             .gsi_base = 0};
    memcpy(buf + len, &io, sizeof(io));
    len += sizeof(io);
    /* No interrupt source overrides: KVM's default GSI routing (kiln sets no other) wires ISA
     * IRQ n to IOAPIC pin n, the PIT included, so the PC's IRQ0->GSI2 would be wrong. Linux
     * would also read any override of IRQ 0 as the SCI's (FADT SCI_INT is 0 when hardware-
     * reduced) and make IRQ 0 level-triggered. */
    header(&m->h, "APIC", (uint32_t)len, 5, "KILNAPIC");
    return place(l, m, (uint32_t)len);
}

int x86_acpi_write(struct guest_mem *mem, const struct x86_platform *plat, uint64_t *rsdp_gpa)
{
    uint8_t dsdt_buf[DSDT_MAX];
    struct {
        struct sdt_header h;
        uint64_t entries[2];
    } __attribute__((packed)) xsdt = {0};
    struct rsdp rsdp = {0};
    struct layout l = {.next = sizeof(struct rsdp)};
    uint64_t dsdt, fadt, madt, xsdt_gpa;
    struct aml a;
    int ret;

    ret = x86_platform_check(plat);
    if (ret < 0)
        return ret;
    l.base = guest_mem_ptr(mem, X86_ACPI_ADDR, X86_ACPI_END - X86_ACPI_ADDR);
    if (!l.base) {
        log_error("acpi: guest RAM does not cover 0x%llx..0x%llx for the ACPI tables",
                  (unsigned long long)X86_ACPI_ADDR, (unsigned long long)X86_ACPI_END);
        return -ENOMEM;
    }
    memset(l.base, 0, X86_ACPI_END - X86_ACPI_ADDR);

    aml_init(&a, dsdt_buf, sizeof(dsdt_buf));
    aml_bytes(&a, &(struct sdt_header){0}, sizeof(struct sdt_header));
    build_dsdt(&a, plat);
    if (a.bad)
        return -ENOMEM;
    header((struct sdt_header *)dsdt_buf, "DSDT", (uint32_t)a.len, 2, "KILNDSDT");
    dsdt = place(&l, dsdt_buf, (uint32_t)a.len);
    fadt = dsdt ? write_fadt(&l, dsdt) : 0;
    madt = fadt ? write_madt(&l, plat->ncpus) : 0;
    if (!madt)
        return -ENOMEM;
    xsdt.entries[0] = fadt;
    xsdt.entries[1] = madt;
    header(&xsdt.h, "XSDT", sizeof(xsdt), 1, "KILNXSDT");
    xsdt_gpa = place(&l, &xsdt, sizeof(xsdt));
    if (!xsdt_gpa)
        return -ENOMEM;

    /* The RSDP goes first, at X86_ACPI_ADDR: 16-byte aligned inside 0xE0000..0xFFFFF, where
     * the legacy scan finds it when the boot protocol does not pass its address. */
    memcpy(rsdp.signature, "RSD PTR ", 8);
    memcpy(rsdp.oem_id, OEM_ID, 6);
    rsdp.revision = 2;
    rsdp.length = sizeof(rsdp);
    rsdp.xsdt_address = xsdt_gpa;
    rsdp.checksum = x86_table_checksum(&rsdp, 20);
    rsdp.extended_checksum = x86_table_checksum(&rsdp, sizeof(rsdp));
    memcpy(l.base, &rsdp, sizeof(rsdp));
    *rsdp_gpa = X86_ACPI_ADDR;
    return 0;
}
