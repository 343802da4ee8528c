/* uk.h: unikernel mode's internal API: the ELF loader, the long-mode boot state, the confined
 * file table, hypercall dispatch and the run loop (docs/unikernel.md). */
#ifndef KILN_UK_H
#define KILN_UK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "kiln/hvc.h"
#include "vmm/vmm.h"

/* ---- exit codes (docs/exit-codes.md) --------------------------------------------------------
 * A clean exit returns the guest's own code (0..KILN_HVC_EXIT_MAX). kiln's own reasons: 1 host
 * error, 2 bad usage or a refused ELF (bad headers, ABI version mismatch), 124 timeout, 130 SIGINT,
 * 143 SIGTERM, and these, when the guest broke the ABI or crashed: */
enum uk_exit {
    UK_EXIT_BAD_POINTER = 240,   /* a guest address (argument struct or buffer) outside RAM */
    UK_EXIT_BAD_HYPERCALL = 241, /* malformed call: padding, sizes, access width, exit code */
    UK_EXIT_UNKNOWN_PORT = 242,  /* I/O to a port that is neither a call nor the UART */
    UK_EXIT_TRIPLE_FAULT = 243,  /* KVM_EXIT_SHUTDOWN */
    UK_EXIT_VCPU_ERROR = 244,    /* HLT, MMIO, failed entry, emulation failure, other exits */
};
/* "bad-pointer", ... for the codes above and the shared ones; "guest-exit" for 0..239. */
const char *uk_exit_name(int code);

#define UK_MEM_MIN     (16ULL << 20)
#define UK_MEM_MAX     (3ULL << 30) /* all RAM below the 32-bit MMIO hole: one region */
#define UK_MEM_DEFAULT (64ULL << 20)

/* ---- ELF loader (elf.c) ----------------------------------------------------------------------
 * A static ELF64 x86-64 ET_EXEC whose PT_LOAD segments are identity-linked (p_vaddr == p_paddr),
 * lie in [KILN_HVC_LOAD_MIN, mem->size), do not overlap, and whose entry lies in an executable
 * segment. PT_INTERP, PT_DYNAMIC and ET_DYN are refused (dynamic). The Kiln ABI note must be
 * present with version KILN_HVC_VERSION. */
#define UK_ELF_MAX_PHDRS 32

struct uk_image {
    uint64_t entry;
    uint64_t image_end;   /* highest p_paddr + p_memsz */
    uint32_t abi_version; /* from the note; 0 when none */
    uint64_t pvh_entry;   /* XEN_ELFNOTE_PHYS32_ENTRY, 0 when none (informational) */
    unsigned nsegments;
};

/* Checks the image without touching memory when mem is NULL (mem_size bounds still apply),
 * else also copies the segments and zeroes their bss. Returns 0, or -EINVAL (bad image),
 * -ENOMEM (does not fit mem_size), -EPROTO (ABI note missing or of another version) with a
 * message naming the problem in err. */
int uk_elf_load(struct guest_mem *mem, uint64_t mem_size, const uint8_t *elf, size_t len,
                struct uk_image *img, char *err, size_t errlen);

/* ---- boot state (boot.c) -----------------------------------------------------------------------
 * The GDT, identity page tables (2 MiB pages over all of RAM) and boot info in low memory, and
 * the BSP in 64-bit mode at img->entry with RDI = KILN_HVC_BOOT_INFO, RSP = top of RAM, CR4 with
 * OSFXSR/OSXMMEXCPT so SSE works. Returns 0 or -ENOMEM when RAM is missing. */
int uk_boot_setup(struct guest_mem *mem, const struct uk_image *img,
                  const struct kiln_hvc_boot_info *info, struct kvm_regs *regs,
                  struct kvm_sregs *sregs);
/* The CPUID hook for vm_config: kiln's brand string in leaves 0x80000002..4. */
void uk_cpuid_brand(struct kvm_cpuid2 *cpuid, unsigned index);

/* ---- confined files (files.c)
 * -------------------------------------------------------------------- A bounded table of host
 * descriptors the guest opened beneath the mount directory. Guest descriptors 0..2 are the host's
 * stdin/stdout/stderr; files are UK_FD_FIRST onwards. */
#define UK_FD_FIRST  3
#define UK_MAX_FILES 32

struct uk_files {
    int root_fd; /* O_PATH directory of --mount, or -1: every file call fails with -EACCES */
    int fds[UK_MAX_FILES];
    bool force_walk; /* tests: use the component walk even where openat2 exists */
};

/* Opens `mount` (NULL for none). Returns 0 or -errno. */
int uk_files_init(struct uk_files *f, const char *mount);
void uk_files_close_all(struct uk_files *f);
/* Validates a guest path (1..KILN_HVC_MAX_PATH bytes, no NUL, relative) and opens it beneath the
 * mount with RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS (or, without openat2, a component walk that
 * refuses ".." and every symlink). Only regular files. Returns a guest fd or -errno: -EACCES
 * without a mount, -EINVAL for a bad path or flags, -EXDEV for an escape, -EMFILE when full. */
int uk_files_open(struct uk_files *f, const char *path, size_t len, uint32_t flags, uint32_t mode);
int uk_files_unlink(struct uk_files *f, const char *path, size_t len);
/* The host descriptor behind guest fd `fd` (0..2 map to the host's standard ones), or -EBADF. */
int uk_files_host_fd(const struct uk_files *f, uint64_t fd);
int uk_files_close(struct uk_files *f, uint64_t fd);

/* ---- hypercalls (hvc.c)
 * -------------------------------------------------------------------------- */
struct uk_hvc {
    struct guest_mem *mem;
    struct uk_files files;
    char *const *argv; /* what KILN_HVC_CMDSIZE/CMDVAL return */
    unsigned argc;
    char *const *envp;
    unsigned envc;
    uint64_t start_ns; /* CLOCK_MONOTONIC when the VM started */
    int out_fd;        /* the guest's stdout and the UART (normally 1) */
    int err_fd;        /* the guest's stderr (normally 2) */
    int in_fd;         /* the guest's stdin (normally 0) */
    bool trace;        /* --trace-hypercalls: log each call at warning level */
    int exit_code;     /* -1 while running; the stop code once a call ended the VM */
    uint64_t ncalls;
};

/* Performs call `nr` with its argument struct at guest-physical `gpa`. Returns 0 to resume the
 * guest, or 1 when the VM must stop with h->exit_code: the guest's own code (KILN_HVC_EXIT),
 * UK_EXIT_BAD_POINTER or UK_EXIT_BAD_HYPERCALL (logged with the reason). */
int uk_hvc_dispatch(struct uk_hvc *h, unsigned nr, uint64_t gpa);
/* The bus handler for ports KILN_HVC_PORT_BASE..+KILN_HVC_NCALLS (opaque: struct uk_hvc). */
void uk_hvc_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* ---- the run (run.c)
 * ------------------------------------------------------------------------------ */
struct uk_config {
    const char *elf_path;
    uint64_t mem_size;
    const char *mount; /* NULL: no file access */
    char *const *argv; /* the guest's argv (argv[0] is the ELF path) */
    unsigned argc;
    char *const *envp; /* --env NAME=VALUE entries */
    unsigned envc;
    unsigned timeout_s; /* 0: none */
    bool trace;
    const char *stats_path; /* NULL: none; JSON written at exit */
    const char *kvm_path;   /* NULL: /dev/kvm */
    /* Return with the VM's descriptors and memory still open (everything else released): for a
     * caller that exits at once and leaves KVM's teardown to a helper (tools/unikernel.c). */
    bool keep_vm;
};

/* Loads and runs the unikernel; returns the exit code (guest code or UK_EXIT_* or VM_EXIT_*).
 * With cfg->keep_vm, kept_fds receives the descriptors left open for the VM (KVM, VM, vCPU, RAM
 * memfd; -1 where none), for the caller's teardown helper. */
#define UK_KEPT_FDS 4
int uk_run(const struct uk_config *cfg, uint64_t start_ns, int kept_fds[UK_KEPT_FDS]);

#endif
