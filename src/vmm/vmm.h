/* vmm.h: the VMM core's internal API: guest memory, the I/O bus, the VM, vCPUs and the event loop.
 */
#ifndef KILN_VMM_H
#define KILN_VMM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

/* ---- exit codes (docs/exit-codes.md) -------------------------------------------------------
 * Why the VMM ended; the value is the process exit code of `kiln run`. */
enum vm_exit_reason {
    VM_EXIT_NONE = -1,        /* still running */
    VM_EXIT_POWEROFF = 0,     /* guest powered off (ACPI S5) or halted every vCPU */
    VM_EXIT_ERROR = 1,        /* host-side failure: set-up error, KVM failure */
    VM_EXIT_USAGE = 2,        /* bad command line or bad input (image, size, ...) */
    VM_EXIT_REBOOT = 3,       /* guest asked for a reset (i8042 0xFE, ACPI reset register) */
    VM_EXIT_PANIC = 4,        /* guest kernel panicked (then reset) */
    VM_EXIT_TRIPLE_FAULT = 5, /* KVM_EXIT_SHUTDOWN: the guest triple-faulted */
    VM_EXIT_VCPU_ERROR = 6,   /* KVM internal error, failed entry, unexpected exit */
    VM_EXIT_TIMEOUT = 124,    /* --timeout expired (as timeout(1)) */
    VM_EXIT_SIGINT = 130,     /* SIGINT, or Ctrl-A x on the console */
    VM_EXIT_SIGTERM = 143,    /* SIGTERM */
};
const char *vm_exit_reason_name(enum vm_exit_reason reason);

/* ---- guest memory (memory.c) ---------------------------------------------------------------
 * Guest RAM is one memfd mapped MAP_SHARED|MAP_NORESERVE. RAM that would overlap the 32-bit MMIO
 * hole [X86_MMIO_HOLE_START, 4 GiB) is placed above 4 GiB instead, so there are one or two
 * regions. guest_mem_ptr() is THE checked accessor: every guest-physical address and length that
 * comes from a guest, an image or a user goes through it before the host touches memory. */
#define GUEST_MEM_MAX_REGIONS 2
#define GUEST_MEM_MIN_SIZE    (16ULL << 20)
#define GUEST_MEM_MAX_SIZE    (1ULL << 40)

struct guest_region {
    uint64_t gpa;       /* guest-physical start */
    uint64_t size;      /* bytes */
    uint64_t fd_offset; /* offset of this region in the memfd */
    uint8_t *hva;       /* host mapping */
};

struct guest_mem {
    int fd;        /* the memfd backing all regions, -1 if none */
    uint8_t *map;  /* one mapping of the whole memfd */
    uint64_t size; /* total RAM bytes */
    bool huge;     /* 2 MiB pages asked for and granted by the host (guest_mem_use_hugepages) */
    unsigned nregions;
    struct guest_region regions[GUEST_MEM_MAX_REGIONS];
};

/* Creates guest RAM of `size` bytes (GUEST_MEM_MIN_SIZE..GUEST_MEM_MAX_SIZE, a multiple of 2 MiB
 * is not required but size is rounded up to 4 KiB). `hole_start` is where the MMIO hole begins.
 * Returns 0 or -errno (-EINVAL for a size out of range). */
int guest_mem_init(struct guest_mem *mem, uint64_t size, uint64_t hole_start);
void guest_mem_destroy(struct guest_mem *mem);
/* Asks for 2 MiB transparent huge pages behind guest RAM (MADV_HUGEPAGE). The guest's first
 * touch of a page costs the host a fault and, under nested virtualization, a nested page-table
 * exit per host page: with 2 MiB pages a fresh 64 MiB in the test bed cost 0.16 s instead of
 * 1.7 s, and a boot 0.3 s less (docs/vmm.md). For memfd RAM the host's shmem_enabled policy
 * decides; kiln only advises. Returns true when the policy grants them (mem->huge), false when
 * guest RAM stays on 4 KiB pages (*policy says why: "never", "deny", or "unknown" without THP).
 * Not for RAM given back in 4 KiB pieces (the balloon): khugepaged would refill the holes. */
bool guest_mem_use_hugepages(struct guest_mem *mem, char *policy, size_t len);
/* Host pointer for [gpa, gpa+len) if that range lies entirely inside one RAM region, else NULL.
 * len may be 0 (then gpa must still be inside, or at the end of, a region). */
void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* Copies len bytes from src to guest RAM at gpa after the same check as guest_mem_ptr (-EFAULT if
 * the range is not RAM). Large copies go through pwrite() on the memfd, which fills the pages
 * inside the kernel instead of taking a page fault per 4 KiB page: about twice as fast for a
 * kernel image, which is most of kiln's set-up time. */
int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);
/* Gives the host back the pages backing [gpa, gpa+len) (both 4 KiB aligned, inside one region):
 * punches a hole in the memfd, so they read as zeros afterwards and no longer count in RSS. For
 * the balloon. Returns 0, -EINVAL (unaligned or not RAM) or -errno from fallocate. */
int guest_mem_discard(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* Bytes of RAM below the MMIO hole (the end of the first region). */
uint64_t guest_mem_low_end(const struct guest_mem *mem);

/* ---- I/O bus (bus.c) ---------------------------------------------------------------------------
 * Port I/O and MMIO ranges in one registry. Devices register before the vCPUs start; lookups
 * afterwards are lock-free (the table never changes while vCPUs run). A handler runs on the
 * vCPU thread that trapped the access and must not block; it locks its own device state when the
 * event-loop thread shares it. `offset` is relative to the registered base; on reads the handler
 * fills data[0..len). Accesses that hit no device read as all-ones and are logged once per
 * address. */
enum bus_space { BUS_PIO = 0, BUS_MMIO = 1 };

typedef void (*bus_io_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                          bool is_write);

#define BUS_MAX_RANGES    64
#define BUS_MAX_UNHANDLED 128

struct bus_range {
    uint64_t base;
    uint64_t len;
    bus_io_fn fn;
    void *opaque;
    const char *name;
};

struct bus {
    unsigned count[2];
    struct bus_range ranges[2][BUS_MAX_RANGES]; /* sorted by base */
    pthread_mutex_t unhandled_lock;             /* guards the set below (a cold path) */
    unsigned nunhandled;
    uint64_t unhandled[BUS_MAX_UNHANDLED]; /* (space << 63) | addr, already logged */
};

void bus_init(struct bus *bus);
void bus_destroy(struct bus *bus);
/* Returns 0, -EEXIST when the range overlaps one already registered, -ENOSPC when full,
 * -EINVAL for len 0 or an overflowing range. */
int bus_register(struct bus *bus, enum bus_space space, uint64_t base, uint64_t len, bus_io_fn fn,
                 void *opaque, const char *name);
const struct bus_range *bus_find(const struct bus *bus, enum bus_space space, uint64_t addr);
/* Dispatches one access; returns true if a device handled it. Unhandled reads fill 0xff and are
 * logged (at info level) once per address, up to BUS_MAX_UNHANDLED addresses. */
bool bus_dispatch(struct bus *bus, enum bus_space space, uint64_t addr, uint8_t *data, uint32_t len,
                  bool is_write);

/* ---- what devices may ask of the VM ---------------------------------------------------------
 * Devices never see struct vm: they get this table, so unit tests can pass fakes. */
struct dev_host {
    /* Drive an interrupt line (GSI) to `level`. Edge-triggered ISA lines rise on 0 -> 1. */
    void (*set_irq)(void *opaque, uint32_t gsi, bool level);
    /* Ask the VM to stop with `reason`; returns at once, the stop happens asynchronously. */
    void (*request_exit)(void *opaque, enum vm_exit_reason reason);
    /* Lets KVM signal eventfd `fd` itself when the guest writes `datamatch` (len bytes) to MMIO
     * address `addr`, without an exit to userspace (KVM_IOEVENTFD). Returns 0 or -errno. */
    int (*add_ioeventfd)(void *opaque, int fd, uint64_t addr, uint32_t len, uint64_t datamatch);
    /* Makes every write to eventfd `fd` pulse interrupt line `gsi` inside KVM (KVM_IRQFD). */
    int (*add_irqfd)(void *opaque, int fd, uint32_t gsi);
    void *opaque;
};

/* ---- event loop (eventloop.c) ----------------------------------------------------------------
 * One epoll loop on its own thread: console input, timers, later the control socket and device
 * backends. Callbacks run on the loop thread. */
typedef void (*evloop_fn)(void *opaque, uint32_t events);

struct evloop;
struct evloop *evloop_create(void);
void evloop_destroy(struct evloop *loop);
/* Watches fd for `events` (EPOLLIN ...). Returns 0 or -errno. */
int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_fn fn, void *opaque);
int evloop_del(struct evloop *loop, int fd);
/* Runs until evloop_stop(); returns 0 or -errno on an epoll failure. */
int evloop_run(struct evloop *loop);
/* Thread-safe; wakes the loop and makes evloop_run() return. */
void evloop_stop(struct evloop *loop);

/* ---- KVM (kvm.c) ---------------------------------------------------------------------------- */
/* Opens /dev/kvm (or `path`), checks the API version and every capability kiln relies on. On
 * failure returns -errno and writes a message naming the missing piece into err. */
int kvm_open(const char *path, int *kvm_fd, char *err, size_t errlen);
/* The capabilities kvm_open() insists on, for `kiln doctor`. */
struct kvm_cap_desc {
    int cap;
    const char *name;
    bool required;
};
extern const struct kvm_cap_desc kvm_caps[];
extern const unsigned kvm_ncaps;

/* ---- the VM (vm.c, vcpu.c) --------------------------------------------------------------------
 */
struct vm_config {
    uint64_t mem_size;    /* bytes of guest RAM */
    unsigned ncpus;       /* 1..X86_MAX_CPUS */
    const char *kvm_path; /* NULL: /dev/kvm */
    bool hugepages;       /* guest RAM on 2 MiB pages where the host allows (memory.c) */
    /* Unikernel mode (src/unikernel): no in-kernel irqchip, PIT or LAPIC set-up, so HLT exits to
     * userspace and set-up is cheaper; and extra CPUID edits after x86_cpuid_fixup (or NULL). */
    bool no_irqchip;
    void (*cpuid_hook)(struct kvm_cpuid2 *cpuid, unsigned index);
};

struct vm;

/* Exit counters per vCPU (GetMetrics): one relaxed atomic add per exit, no shared cache line. */
enum vcpu_exit_kind {
    VCPU_EXIT_IO,
    VCPU_EXIT_MMIO,
    VCPU_EXIT_INTR, /* KVM_EXIT_INTR, or KVM_RUN interrupted by a kick (EINTR) */
    VCPU_EXIT_HLT,
    VCPU_EXIT_SHUTDOWN,
    VCPU_EXIT_SYSTEM_EVENT,
    VCPU_EXIT_FAIL_ENTRY,
    VCPU_EXIT_INTERNAL_ERROR,
    VCPU_EXIT_OTHER,
    VCPU_EXIT_KINDS
};
const char *vcpu_exit_kind_name(unsigned kind); /* "io", "mmio", ... */

struct vcpu {
    struct vm *vm;
    unsigned index;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    pthread_t thread;
    bool thread_started;
    _Atomic bool state_wanted; /* the poller asks: report your run state at the next exit */
    _Atomic int stopped;       /* -1 unknown, 1 halted with interrupts off or never started */
    _Atomic int tid;           /* the vCPU thread's kernel id, 0 until it runs */
    uint64_t poll_cpu_ns;      /* its CPU time at the previous stop poll (poller's own) */
    _Atomic bool paused;       /* held outside KVM_RUN by vcpus_pause() */
    _Atomic bool exited;       /* the thread has left its run loop */
    _Atomic uint64_t exits[VCPU_EXIT_KINDS];
};

/* Exit observers: callbacks run once when the VM stops (vm_run_exit_observers). */
#define VM_MAX_OBSERVERS 16
typedef void (*vm_observer_fn)(void *opaque, enum vm_exit_reason reason);

struct vm {
    int kvm_fd;
    int vm_fd;
    unsigned ncpus;
    struct guest_mem mem;
    struct bus bus;
    struct vcpu *vcpus;
    struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, before per-vCPU fix-ups */
    bool no_irqchip;          /* vm_config.no_irqchip (unikernel mode) */
    void (*cpuid_hook)(struct kvm_cpuid2 *cpuid, unsigned index); /* vm_config.cpuid_hook */
    struct dev_host host;    /* what devices may ask of this VM */
    struct evloop *loop;     /* stopped when the VM should end */
    _Atomic int exit_reason; /* VM_EXIT_NONE until the first request wins */
    _Atomic bool panic_seen; /* the guest printed a kernel panic banner; its reset is a panic */
    _Atomic bool stopping;   /* vCPU threads leave KVM_RUN and exit */
    uint64_t start_ns;       /* process start, for the boot timer and set-up figures */
    _Atomic uint64_t first_run_ns; /* when the boot vCPU first entered KVM_RUN */
    /* Pause (vcpu.c): vCPU threads park on pause_cond while pause_wanted is set. */
    bool pause_ready; /* pause_lock and pause_cond are initialised (vcpus_start) */
    pthread_mutex_t pause_lock;
    pthread_cond_t pause_cond;
    _Atomic bool pause_wanted;
    _Atomic bool paused;               /* every vCPU is held and the clock saved */
    struct kvm_clock_data pause_clock; /* kvmclock at the pause, restored at resume */
    bool pause_clock_saved;
    /* Exit observers (observers.c): registered during set-up or on the loop thread. */
    unsigned nobservers;
    _Atomic bool observers_run;
    struct {
        vm_observer_fn fn;
        void *opaque;
    } observers[VM_MAX_OBSERVERS];
};

/* Creates the VM: KVM checks, irqchip, PIT, guest RAM and its memory slots, the vCPUs (CPUID, MSRs,
 * FPU, LAPIC set) and an empty bus. err receives a message on failure. */
struct vm *vm_create(const struct vm_config *cfg, uint64_t start_ns, char *err, size_t errlen);
/* Stops and joins vCPU threads if running, frees everything. */
void vm_destroy(struct vm *vm);
/* Records the first exit request (later ones are ignored) and stops the event loop. Thread-safe. */
void vm_request_exit(struct vm *vm, enum vm_exit_reason reason);
/* Asserts or de-asserts an interrupt line of the in-kernel IOAPIC/PIC. */
int vm_set_irq(struct vm *vm, uint32_t gsi, bool level);

/* Loads the boot vCPU's registers. */
int vcpu_set_boot_state(struct vcpu *vcpu, const struct kvm_regs *regs,
                        const struct kvm_sregs *sregs);
/* Starts one thread per vCPU running KVM_RUN and dispatching exits to the bus. */
int vcpus_start(struct vm *vm);
/* Makes every vCPU thread leave KVM_RUN and exit, then joins them. Idempotent. */
void vcpus_stop(struct vm *vm);
/* Asks every quiet vCPU whether it is halted with interrupts off (or never started), and
 * returns true if the previous round found all of them so: the guest has stopped for good (Linux
 * without ACPI ends a poweroff this way). A vCPU that ran guest code for more than an eighth of
 * `period_ns` since the last call is busy, so it is left in the guest instead of being kicked
 * out to answer. Called every period_ns from the event loop. */
bool vcpus_poll_stopped(struct vm *vm, uint64_t period_ns);
/* Logs a vCPU's registers, segments and control registers (for fatal exits). */
void vcpu_dump(struct vcpu *vcpu);
/* Kicks every vCPU out of KVM_RUN and holds it there; returns once all are held (or gone), with
 * kvmclock saved so guest time does not advance while paused. Idempotent. Returns 0, or
 * -ESHUTDOWN when the VM is stopping. Not on a vCPU thread. */
int vcpus_pause(struct vm *vm);
/* Restores kvmclock and lets the vCPUs run again; returns once every held one has left its
 * hold. Idempotent. Returns 0 (a kvmclock restore failure is logged, not fatal). */
int vcpus_resume(struct vm *vm);
bool vcpus_paused(struct vm *vm);

/* Registers fn to run once when the VM stops (during set-up or on the loop thread). Returns 0
 * or -ENOSPC (VM_MAX_OBSERVERS). */
int vm_on_exit(struct vm *vm, vm_observer_fn fn, void *opaque);
/* Runs the observers (last registered first), once; later calls do nothing. Called by the
 * machine after the vCPUs stopped. */
void vm_run_exit_observers(struct vm *vm);

#endif
