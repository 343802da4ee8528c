/* cpuid.c: per-vCPU CPUID: one socket of ncpus single-thread cores, the KVM signature, and the
 * features kiln cannot back cleared. Policy: docs/platform-tables.md. */
#include <assert.h>
#include <string.h>

#include "arch/x86/x86.h"
#include "lib/lib.h"

enum reg { EAX, EBX, ECX, EDX };

#define ANY_INDEX UINT32_MAX

/* Feature bits rewritten in what KVM reports. */
struct cpuid_fix {
    uint32_t function;
    uint32_t index; /* ANY_INDEX: every subleaf */
    enum reg reg;
    uint32_t clear;
    uint32_t set;
};

static const struct cpuid_fix fixes[] = {
    /* PDCM (IA32_PERF_CAPABILITIES) describes a PMU, and kiln offers none (leaf 0xA below).
     * TSC-deadline is emulated by KVM's in-kernel LAPIC but not reported by
     * KVM_GET_SUPPORTED_CPUID; it gives the guest its cheapest timer. HYPERVISOR: the guest
     * should know, and then looks for 0x40000000. */
    {0x1, 0, ECX, 1u << 15, (1u << 24) | (1u << 31)},
    /* Thermal and power management (turbo, HWP, energy-performance bias...) live in MSRs KVM
     * does not emulate; only ARAT (EAX bit 2, the APIC timer keeps running in C-states) holds. */
    {0x6, 0, EAX, ~(1u << 2), 0},
    {0x6, 0, EBX, ~0u, 0},
    {0x6, 0, ECX, ~0u, 0},
    {0x6, 0, EDX, ~0u, 0},
    /* SGX needs an enclave page cache that kiln does not map. */
    {0x7, 0, EBX, 1u << 2, 0},
    /* WAITPKG: UMWAIT/TPAUSE wait without a VM exit and need IA32_UMWAIT_CONTROL, which kiln
     * does not manage; SGX_LC as SGX. */
    {0x7, 0, ECX, (1u << 5) | (1u << 30), 0},
    /* No PMU: architectural performance monitoring version 0. */
    {0xa, ANY_INDEX, EAX, ~0u, 0},
    {0xa, ANY_INDEX, EBX, ~0u, 0},
    {0xa, ANY_INDEX, ECX, ~0u, 0},
    {0xa, ANY_INDEX, EDX, ~0u, 0},
};

static uint32_t *reg_of(struct kvm_cpuid_entry2 *e, enum reg r)
{
    switch (r) {
    case EAX:
        return &e->eax;
    case EBX:
        return &e->ebx;
    case ECX:
        return &e->ecx;
    default:
        return &e->edx;
    }
}

/* Bits of APIC id that number the cores of the package. */
static uint32_t core_bits(unsigned ncpus)
{
    uint32_t bits = 0;

    while ((1u << bits) < ncpus)
        bits++;
    return bits;
}

/* Threads sharing a cache of `level` (1-based), minus one: L1 and L2 are per core, the last
 * level is shared by the whole socket. */
static uint32_t cache_sharing(uint32_t eax, unsigned ncpus)
{
    return ((eax >> 5) & 7) >= 3 ? ncpus - 1 : 0;
}

/* Leaves 0xB and 0x1F: subleaf 0 the SMT level (one thread), subleaf 1 the core level, the
 * rest invalid. EDX is the x2APIC id on every subleaf. */
static void topology_level(struct kvm_cpuid_entry2 *e, unsigned index, unsigned ncpus)
{
    e->edx = index;
    switch (e->index) {
    case 0:
        e->eax = 0;
        e->ebx = 1;
        e->ecx = 1u << 8; /* level 0, type SMT */
        break;
    case 1:
        e->eax = core_bits(ncpus);
        e->ebx = ncpus;
        e->ecx = 1 | (2u << 8); /* level 1, type core */
        break;
    default:
        e->eax = 0;
        e->ebx = 0;
        e->ecx = e->index & 0xff; /* type 0: no such level */
        break;
    }
}

static void topology(struct kvm_cpuid_entry2 *e, unsigned index, unsigned ncpus)
{
    switch (e->function) {
    case 0x1:
        /* CLFLUSH line 8 x 8 bytes, logical processors in the package, initial APIC id. */
        e->ebx = (e->ebx & 0xff) | (8u << 8) | (ncpus << 16) | (index << 24);
        e->edx = ncpus > 1 ? e->edx | (1u << 28) : e->edx & ~(1u << 28); /* HTT */
        break;
    case 0x4:
        if (e->eax & 0x1f) /* a cache is described */
            e->eax = (e->eax & 0x3fff) | (cache_sharing(e->eax, ncpus) << 14) | ((ncpus - 1) << 26);
        break;
    case 0xb:
    case 0x1f:
        topology_level(e, index, ncpus);
        break;
    case 0x40000000:
        /* KVM's signature; 0x40000001 (KVM's features) is kept as KVM reports it. */
        e->eax = 0x40000001;
        memcpy(&e->ebx, "KVMK", 4);
        memcpy(&e->ecx, "VMKV", 4);
        memcpy(&e->edx, "M\0\0\0", 4);
        break;
    case 0x80000008:
        /* AMD: cores in the package minus one, and the APIC id bits that number them. */
        e->ecx = (e->ecx & ~0xf0ffu) | (core_bits(ncpus) << 12) | (ncpus - 1);
        break;
    case 0x8000001d:
        if (e->eax & 0x1f)
            e->eax = (e->eax & ~(0xfffu << 14)) | (cache_sharing(e->eax, ncpus) << 14);
        break;
    case 0x8000001e:
        /* Extended APIC id; core id with one thread per core; node 0 of one node. */
        e->eax = index;
        e->ebx = (e->ebx & ~0xffffu) | index;
        e->ecx &= ~0x7ffu;
        e->edx = 0;
        break;
    default:
        break;
    }
}

void x86_cpuid_fixup(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus)
{
    assert(ncpus >= 1 && ncpus <= X86_MAX_CPUS && index < ncpus);

    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

        for (size_t f = 0; f < ARRAY_SIZE(fixes); f++) {
            const struct cpuid_fix *fix = &fixes[f];
            if (fix->function != e->function)
                continue;
            if (fix->index != ANY_INDEX && (e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) &&
                fix->index != e->index)
                continue;
            uint32_t *r = reg_of(e, fix->reg);
            *r = (*r & ~fix->clear) | fix->set;
        }
        topology(e, index, ncpus);
    }
}
