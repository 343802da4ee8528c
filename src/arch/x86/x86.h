/* x86.h: the x86_64 platform: memory layout, kernel loaders, boot CPU state, CPUID, MSRs and the
 * firmware tables (e820, MP table, ACPI) a Linux guest reads. Everything here is pure: it writes
 * into guest memory or fills KVM structs, and never issues an ioctl, so it is unit-testable. */
#ifndef KILN_X86_H
#define KILN_X86_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <asm/bootparam.h>
#include <linux/kvm.h>

#include "../../vmm/vmm.h"

/* ---- guest-physical layout (docs/memory-layout.md) ------------------------------------------ */
#define X86_GDT_ADDR          0x500ULL  /* boot GDT: null, null, code64 0x10, data 0x18, tss 0x20 */
#define X86_PVH_INFO_ADDR     0x6000ULL /* hvm_start_info, its module list and memory map */
#define X86_ZERO_PAGE_ADDR    0x7000ULL /* struct boot_params */
#define X86_BOOT_STACK_TOP    0x8ff0ULL
#define X86_PML4_ADDR         0x9000ULL /* identity map of the first 4 GiB with 2 MiB pages: */
#define X86_PDPT_ADDR         0xa000ULL /*   PML4 -> PDPT -> 4 page directories */
#define X86_PD_ADDR           0xb000ULL /*   0xb000..0xefff */
#define X86_CMDLINE_ADDR      0x20000ULL
#define X86_CMDLINE_MAX       0x10000ULL /* bytes including the NUL; the kernel may accept fewer */
#define X86_EBDA_START        0x9fc00ULL /* RAM below this is usable; MP table lives here */
#define X86_MPTABLE_ADDR      X86_EBDA_START
#define X86_ACPI_ADDR         0xe0000ULL /* RSDP (found by the legacy scan), then the tables */
#define X86_ACPI_END          0x100000ULL
#define X86_HIMEM_START       0x100000ULL /* where bzImage protected-mode code is loaded */
#define X86_MMIO_HOLE_START   0xc0000000ULL
#define X86_MMIO_HOLE_END     0x100000000ULL
#define X86_BOOT_TIMER_MMIO   0xc0000000ULL /* boot-timer device, one page */
#define X86_VIRTIO_MMIO_BASE  0xd0000000ULL /* virtio-mmio devices, X86_VIRTIO_MMIO_SIZE apart */
#define X86_VIRTIO_MMIO_SIZE  0x1000ULL
#define X86_VIRTIO_FIRST_GSI  5 /* virtio-mmio devices use GSI 5, 6, 7, ... 23 */
#define X86_IOAPIC_ADDR       0xfec00000ULL
#define X86_LAPIC_ADDR        0xfee00000ULL
#define X86_IDENTITY_MAP_ADDR 0xfeffc000ULL /* KVM_SET_IDENTITY_MAP_ADDR: one page */
#define X86_TSS_ADDR          0xfeffd000ULL /* KVM_SET_TSS_ADDR: three pages */

/* Architectural bits (Intel SDM vol. 3) for code that builds page tables and boot CPU state. */
#define X86_CR0_PE   (1ULL << 0)  /* protected mode */
#define X86_CR0_MP   (1ULL << 1)  /* monitor coprocessor */
#define X86_CR0_ET   (1ULL << 4)  /* extension type (reads as 1) */
#define X86_CR0_NE   (1ULL << 5)  /* native x87 errors */
#define X86_CR0_WP   (1ULL << 16) /* ring 0 honours read-only pages */
#define X86_CR0_PG   (1ULL << 31) /* paging */
#define X86_CR4_PAE  (1ULL << 5)
#define X86_EFER_SCE (1ULL << 0) /* SYSCALL/SYSRET */
#define X86_EFER_LME (1ULL << 8)
#define X86_EFER_LMA (1ULL << 10)
#define X86_PTE_P    (1ULL << 0) /* present */
#define X86_PTE_RW   (1ULL << 1) /* writable */
#define X86_PTE_US   (1ULL << 2) /* user-accessible */
#define X86_PTE_PS   (1ULL << 7) /* in a page directory entry: a 2 MiB page */

/* Legacy ports. */
#define X86_PORT_COM1        0x3f8
#define X86_IRQ_COM1         4
#define X86_PORT_I8042_DATA  0x60
#define X86_PORT_I8042_CMD   0x64
#define X86_PORT_RTC         0x70  /* 0x70 index, 0x71 data */
#define X86_PORT_PCI_CONFIG  0xcf8 /* 0xcf8..0xcff */
#define X86_PORT_BOOT_TIMER  0x440 /* same boot-timer device as X86_BOOT_TIMER_MMIO */
#define X86_PORT_ACPI_SLEEP  0x3c0 /* FADT sleep control (write SLP_TYP<<2|SLP_EN) */
#define X86_PORT_ACPI_STATUS 0x3c1 /* FADT sleep status */
#define X86_PORT_ACPI_RESET  0x3c2 /* FADT reset register, reset value 1 */
#define X86_ACPI_S5_SLP_TYP  5     /* \_S5 package value; sleep control write 0x34 */

#define X86_MAX_CPUS   32U
#define X86_MAX_VIRTIO 16

/* ---- e820 (e820.c) ---------------------------------------------------------------------------
 * RAM [0, EBDA), reserved [EBDA, 1 MiB), RAM [1 MiB, low end), RAM above 4 GiB if any. Returns
 * the number of entries written (at most max). */
unsigned x86_e820_build(const struct guest_mem *mem, struct boot_e820_entry *out, unsigned max);

/* ---- kernel loading (loader.c, bzimage.c, elf.c) ----------------------------------------------
 */
enum x86_entry_mode {
    X86_ENTRY_LINUX64, /* 64-bit boot protocol: long mode, RSI = zero page */
    X86_ENTRY_PVH,     /* PVH: 32-bit protected mode, paging off, EBX = hvm_start_info */
};

struct x86_boot_config {
    const uint8_t *kernel; /* the whole image file */
    size_t kernel_len;
    const uint8_t *initrd; /* NULL when none */
    size_t initrd_len;
    const char *cmdline; /* NUL-terminated; "" for none */
    uint64_t rsdp_gpa;   /* 0 when the VM has no ACPI tables */
};

struct x86_boot_info {
    enum x86_entry_mode mode;
    uint64_t entry;        /* guest-physical entry point */
    uint64_t boot_struct;  /* zero page (LINUX64) or hvm_start_info (PVH) */
    uint64_t kernel_start; /* guest-physical range the kernel occupies, including init_size */
    uint64_t kernel_end;
    uint64_t initrd_start; /* 0 when none */
    uint64_t initrd_size;
    const char *format; /* "bzImage", "ELF vmlinux (PVH)", "ELF vmlinux (64-bit entry)" */
};

/* Detects the image format (bzImage by its "HdrS" header, ELF by its magic), validates it and
 * places kernel, initrd, command line and the zero page or PVH start info (with the e820 map) in
 * guest memory. On failure returns -EINVAL (bad or foreign image), -E2BIG (command line longer
 * than the kernel accepts) or -ENOMEM (kernel or initrd does not fit) and writes a message naming
 * the problem into err. Nothing is assumed about the image: every offset and size in it is
 * checked. */
int x86_load_kernel(struct guest_mem *mem, const struct x86_boot_config *cfg,
                    struct x86_boot_info *info, char *err, size_t errlen);

/* ---- boot CPU state (cpu.c) ------------------------------------------------------------------ */
/* Writes the boot GDT (and, for LINUX64, the identity-mapped page tables) into guest memory and
 * fills the BSP's registers for info->mode. Returns 0 or -ENOMEM if low memory is missing. */
int x86_boot_cpu_state(struct guest_mem *mem, const struct x86_boot_info *info,
                       struct kvm_regs *regs, struct kvm_sregs *sregs);
/* A flat ring-0 segment register: base 0, 4 GiB limit with page granularity, present, type
 * `type` (0xb code, 0x3 data); code64 makes it a 64-bit code segment (L set, D/B clear). For
 * hand-built guests (doctor probe, unikernel) whose GDT holds the matching descriptors. */
struct kvm_segment x86_flat_segment(uint16_t selector, uint8_t type, bool code64);
/* FPU state every vCPU starts with (x87 control word 0x37f, MXCSR 0x1f80). */
void x86_fpu_init(struct kvm_fpu *fpu);
/* LAPIC set-up: LINT0 as ExtINT, LINT1 as NMI, as a PC BIOS leaves them. */
void x86_lapic_init(struct kvm_lapic_state *lapic);
/* Fills msrs->entries with the MSRs a vCPU is reset to (SYSENTER/SYSCALL MSRs zero, TSC zero,
 * MISC_ENABLE fast strings, MTRR default type write-back); sets msrs->nmsrs. `max` is the
 * capacity of msrs->entries. Returns the number written. */
unsigned x86_boot_msrs(struct kvm_msrs *msrs, unsigned max);

/* ---- CPUID (cpuid.c) ---------------------------------------------------------------------------
 * Rewrites KVM_GET_SUPPORTED_CPUID output for vCPU `index` of `ncpus` (one thread per core, one
 * socket): initial APIC ids in leaves 0x1, 0xB, 0x1F and 0x8000001E; logical processor counts in
 * leaves 0x1, 0x4 and 0x8000001E/0x80000008; the hypervisor bit and the KVM signature at
 * 0x40000000; features kiln cannot offer are cleared. */
void x86_cpuid_fixup(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus);

/* ---- firmware tables (mptable.c, acpi.c) ----------------------------------------------------- */
struct x86_virtio_dev {
    uint64_t base; /* MMIO base */
    uint64_t size;
    uint32_t gsi; /* IOAPIC input, edge-triggered active-high */
};

struct x86_platform {
    unsigned ncpus;
    unsigned nvirtio;
    struct x86_virtio_dev virtio[X86_MAX_VIRTIO];
};

/* Checks a platform description: 1..X86_MAX_CPUS CPUs, at most X86_MAX_VIRTIO devices, each a
 * non-empty window below 4 GiB with a GSI of 0..23 (an IOAPIC pin). Returns 0 or -EINVAL (logged).
 */
int x86_platform_check(const struct x86_platform *plat);
/* The byte that makes an MP or ACPI table's bytes sum to zero (modulo 256). */
uint8_t x86_table_checksum(const void *data, size_t len);
/* MP table (floating pointer + config table) at X86_MPTABLE_ADDR: every CPU, the IOAPIC, ISA bus
 * and its interrupts, and the virtio GSIs. Returns 0 or -EINVAL (ncpus or nvirtio out of range,
 * a GSI past 23) / -ENOMEM. */
int x86_mptable_write(struct guest_mem *mem, const struct x86_platform *plat);
/* ACPI 6 tables in [X86_ACPI_ADDR, X86_ACPI_END): RSDP, XSDT, MADT (every CPU and the IOAPIC;
 * ISA IRQs identity-mapped, no overrides), a hardware-reduced FADT (sleep control/status and
 * reset registers on the X86_PORT_ACPI_* ports), and a DSDT with \_S5, COM1 and one LNRO0005
 * (virtio-mmio) device per plat->virtio entry. Stores the RSDP address in *rsdp_gpa. Returns 0,
 * -EINVAL (ncpus or nvirtio out of range, a virtio window not below 4 GiB or a GSI past 23) or
 * -ENOMEM. */
int x86_acpi_write(struct guest_mem *mem, const struct x86_platform *plat, uint64_t *rsdp_gpa);

#endif
