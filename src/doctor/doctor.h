/* doctor.h: the KVM fitness probe behind `kiln doctor` and its verdict cache (docs/doctor.md). */
#ifndef KILN_DOCTOR_H
#define KILN_DOCTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/kvm.h>

#include "vmm/vmm.h"

/* ---- the probe guest (probe.c) ---------------------------------------------------------------
 * A few hundred bytes that start in 64-bit ring 0, drop to ring 3 with IRETQ and execute SYSCALL
 * into a handler on a supervisor-only page. Only a host that runs unmodified Linux userspace lets
 * that SYSCALL arrive in ring 0. Everything is identity-mapped with 4 KiB pages; pages not listed
 * here are not present, so any stray access faults and is reported. */
#define PROBE_PML4_ADDR   0x1000ULL
#define PROBE_PDPT_ADDR   0x2000ULL
#define PROBE_PD_ADDR     0x3000ULL
#define PROBE_PT_ADDR     0x4000ULL /* maps the pages below, 4 KiB each */
#define PROBE_GDT_ADDR    0x5000ULL /* supervisor, writable */
#define PROBE_TSS_ADDR    0x5080ULL /* in the GDT's page */
#define PROBE_IDT_ADDR    0x6000ULL /* supervisor, read-only */
#define PROBE_KCODE_ADDR  0x7000ULL /* supervisor, read-only: entry, SYSCALL handler, stubs */
#define PROBE_UCODE_ADDR  0x8000ULL /* user, read-only: SYSCALL */
#define PROBE_USTACK_ADDR 0x9000ULL /* user, writable */
#define PROBE_KSTACK_ADDR 0xa000ULL /* supervisor, writable; TSS.RSP0 is its top */
#define PROBE_IMAGE_SIZE  0xb000ULL /* the image occupies guest-physical [0, PROBE_IMAGE_SIZE) */

#define PROBE_ENTRY           (PROBE_KCODE_ADDR + 0x00)  /* ring 0: IRETQ to ring 3 */
#define PROBE_SYSCALL_HANDLER (PROBE_KCODE_ADDR + 0x80)  /* LSTAR: reports success */
#define PROBE_STUBS           (PROBE_KCODE_ADDR + 0x100) /* one exception stub per vector */
#define PROBE_STUB_SIZE       16
#define PROBE_NVECTORS        32                     /* the IDT covers the exceptions */
#define PROBE_SYSCALL_RIP     (PROBE_UCODE_ADDR + 2) /* RCX after SYSCALL: the next insn */
#define PROBE_KSTACK_TOP      (PROBE_KSTACK_ADDR + 0x1000)
#define PROBE_USTACK_TOP      (PROBE_USTACK_ADDR + 0x1000)

/* GDT selectors, laid out as SYSCALL/SYSRET need them (STAR). */
#define PROBE_SEL_KCODE   0x08 /* 64-bit code, DPL 0 */
#define PROBE_SEL_KDATA   0x10 /* data, DPL 0 */
#define PROBE_SEL_UCODE32 0x18 /* 32-bit code, DPL 3 (SYSRET's base; unused) */
#define PROBE_SEL_UDATA   0x20 /* data, DPL 3 */
#define PROBE_SEL_UCODE   0x28 /* 64-bit code, DPL 3 */
#define PROBE_SEL_TSS     0x30 /* 16-byte 64-bit TSS descriptor */
#define PROBE_GDT_SIZE    0x40

/* The guest answers with one 32-bit OUT to PROBE_PORT. */
#define PROBE_PORT         0xf4
#define PROBE_CODE_SUCCESS 0x5ca11ed0U /* the SYSCALL handler ran */
#define PROBE_CODE_FAULT   0xfa017000U /* | vector: an exception stub ran */

#define PROBE_STAR       ((uint64_t)PROBE_SEL_UCODE32 << 48 | (uint64_t)PROBE_SEL_KCODE << 32)
#define PROBE_SFMASK     0x47700ULL /* TF, DF, IF, IOPL, NT, AC: what Linux masks */
#define PROBE_NMSRS      3          /* STAR, LSTAR, SFMASK */
#define PROBE_TIMEOUT_MS 2000U

/* Writes the probe guest (page tables, GDT with TSS, IDT, code) into `mem`, which holds
 * guest-physical [0, len). Returns 0, or -ENOSPC when len < PROBE_IMAGE_SIZE. */
int probe_build_image(uint8_t *mem, size_t len);
/* The boot vCPU state: 64-bit ring 0 at PROBE_ENTRY with EFER.SCE|LME|LMA, paging on, the GDT,
 * IDT and TSS loaded, and the SYSCALL MSRs in msrs[0..PROBE_NMSRS). */
void probe_boot_state(struct kvm_regs *regs, struct kvm_sregs *sregs,
                      struct kvm_msr_entry msrs[PROBE_NMSRS]);

enum probe_status {
    PROBE_OK = 0,     /* SYSCALL from ring 3 reached the supervisor-only handler in ring 0 */
    PROBE_FAULT,      /* the guest took an exception; the reason names it */
    PROBE_SHUTDOWN,   /* triple fault (KVM_EXIT_SHUTDOWN) */
    PROBE_KVM_ERROR,  /* KVM internal error, failed VM entry, or KVM_RUN refused the vCPU */
    PROBE_TIMEOUT,    /* no answer within the time limit */
    PROBE_UNEXPECTED, /* an exit the guest never asks for (other port, MMIO, HLT, bad state) */
    PROBE_NO_KVM,     /* the probe could not run: no usable KVM (not a verdict on the host) */
};
#define PROBE_NSTATUS (PROBE_NO_KVM + 1)

/* "ok", "fault", "triple-fault", "kvm-error", "timeout", "unexpected", "no-kvm". */
const char *probe_status_name(enum probe_status status);
/* The inverse; returns 0 or -EINVAL for an unknown name. */
int probe_status_parse(const char *name, enum probe_status *out);

#define PROBE_REASON_MAX 256

struct probe_result {
    enum probe_status status;
    uint64_t elapsed_ns;           /* from the first KVM_RUN to the answer */
    char reason[PROBE_REASON_MAX]; /* one line, no newline */
};

/* Classifies one exit of the probe vCPU. `run` is its run area of run_size bytes; regs and sregs
 * are the vCPU's state at that exit; `mem` is guest memory, read (through guest_mem_ptr) for an
 * exception's frame. Returns true and fills out (status and reason) when the exit is the answer,
 * false when the vCPU should simply be run again (KVM_EXIT_INTR). Nothing in run, regs or memory
 * is trusted: offsets and frames are checked, a bad one is reported as such. */
bool probe_classify(const struct kvm_run *run, size_t run_size, const struct kvm_regs *regs,
                    const struct kvm_sregs *sregs, const struct guest_mem *mem,
                    struct probe_result *out);

/* Runs the probe on `kvm_path` (NULL: /dev/kvm) with its own VM (16 MiB, one vCPU, no irqchip),
 * waiting at most timeout_ms for the answer; the vCPU runs on its own thread and is kicked out of
 * KVM_RUN with a signal when time is up. Returns 0 when there is a verdict in *out (PROBE_OK or a
 * failure), or -errno when the probe could not run (status PROBE_NO_KVM, reason says why).
 * Everything it creates is released before it returns; the signal's handler is restored. */
int probe_run(const char *kvm_path, unsigned timeout_ms, struct probe_result *out);

/* ---- verdict cache (probe_cache.c) ----------------------------------------------------------
 * `kiln run` asks before every boot, so the verdict is kept in a small text file keyed by the boot
 * id and the KVM device number: a reboot or a different device means probing again. */
struct probe_cache_key {
    char boot_id[40]; /* /proc/sys/kernel/random/boot_id without the newline */
    uint64_t rdev;    /* st_rdev of the KVM device */
};

/* Fills key from boot_id_path (NULL: /proc/sys/kernel/random/boot_id) and stat(kvm_path).
 * Returns 0, -errno from open/stat, -ENODEV when kvm_path is not a character device, or -EINVAL
 * when the boot id is empty, too long or not printable. */
int probe_cache_key(const char *kvm_path, const char *boot_id_path, struct probe_cache_key *key);
/* "${XDG_RUNTIME_DIR:-/run}/kiln/kvm-probe" (an empty or relative XDG_RUNTIME_DIR counts as
 * unset). Returns 0 or -ENAMETOOLONG. */
int probe_cache_path(char *out, size_t len);
/* Loads a cached verdict. Returns 0; -ENOENT when there is no cache file; -ESTALE when it was
 * written for another key or by another probe version; -EINVAL when it is malformed (then it is
 * ignored and overwritten by the next store). */
int probe_cache_load(const char *path, const struct probe_cache_key *key, struct probe_result *out);
/* Writes the verdict atomically (a temporary file in the same directory, then rename), creating
 * the directory (0755) if needed. PROBE_NO_KVM results are not verdicts: -EINVAL. Returns 0 or
 * -errno. */
int probe_cache_store(const char *path, const struct probe_cache_key *key,
                      const struct probe_result *res);

/* ---- host checks (host.c) --------------------------------------------------------------------
 * What `kiln doctor` reports: the KVM device and its capabilities, the implementation behind it,
 * the devices and kernel features later kiln parts use, the CPU, and the probe's verdict. */
enum doctor_state {
    DOCTOR_OK = 0,
    DOCTOR_INFO,    /* for information only */
    DOCTOR_WARNING, /* present but limited */
    DOCTOR_MISSING, /* absent; `required` says whether that stops Linux guests */
    DOCTOR_FAIL,    /* the probe failed */
};
/* "ok", "info", "warning", "missing", "fail". */
const char *doctor_state_name(enum doctor_state state);

struct doctor_check {
    char name[32];
    enum doctor_state state;
    bool required; /* Linux guests cannot run without it */
    char detail[224];
};

#define DOCTOR_MAX_CHECKS 40

struct doctor_report {
    char kvm_path[256];
    unsigned nchecks;
    struct doctor_check checks[DOCTOR_MAX_CHECKS];
    bool kvm_usable;                    /* opens, right API version, every required capability */
    char kvm_problem[PROBE_REASON_MAX]; /* why not, when !kvm_usable */
    bool probed;                        /* the probe ran and gave a verdict in `probe` */
    struct probe_result probe;
    int exit_code; /* 0 Linux guests can run, 2 KVM cannot run them, 1 no usable KVM */
};

/* Runs every check and, when KVM is usable, the probe (timeout_ms). kvm_path NULL means
 * /dev/kvm. `root` prefixes the /proc, /sys and /dev paths of the other checks: "" for this host,
 * a directory holding a fake tree in tests. */
void doctor_collect(struct doctor_report *rep, const char *kvm_path, const char *root,
                    unsigned timeout_ms);
/* The one-line verdict ("verdict: ...", no newline) for rep->exit_code. */
void doctor_verdict(const struct doctor_report *rep, char *out, size_t len);

#endif
