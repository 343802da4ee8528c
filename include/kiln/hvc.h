/* kiln/hvc.h: the hypercall ABI between `kiln unikernel` and a freestanding guest
 * (docs/unikernel.md).
 *
 * Self-contained and shared by host and guest: fixed-width fields only, explicit padding, every
 * size asserted, grown only by appending. A guest calls by writing the guest-physical address of
 * the call's argument struct (32 bits, `outl`) to port KILN_HVC_PORT_BASE + call number; the host
 * reads the IN fields, does the call and fills the OUT fields before the guest resumes. Guest
 * pointers are guest-physical addresses (the guest is identity-mapped), plain integers on the host.
 * Results are 0 or more on success, or a negative Linux errno value. Padding must be zero.
 */
#ifndef KILN_HVC_H
#define KILN_HVC_H

#include <stdint.h>

/* The ABI version. The guest embeds it in an ELF note (below); the host refuses any other. */
#define KILN_HVC_VERSION 1

/* ---- the ELF note a guest carries -------------------------------------------------------------
 * In a PT_NOTE segment: name "Kiln\0" (namesz 5), type KILN_HVC_NOTE_ABI, descriptor
 * struct kiln_hvc_note_abi. */
#define KILN_HVC_NOTE_NAME "Kiln"
#define KILN_HVC_NOTE_ABI  0x4b4c4e01u

struct kiln_hvc_note_abi {
    uint32_t version; /* KILN_HVC_VERSION the guest was built against */
    uint32_t reserved;
};
_Static_assert(sizeof(struct kiln_hvc_note_abi) == 8, "kiln_hvc_note_abi size");

/* ---- guest-physical layout ---------------------------------------------------------------------
 * [0, 64 KiB): the host's GDT, page tables and boot info; [64 KiB, 1 MiB): the command line;
 * program segments load at KILN_HVC_LOAD_MIN or above; RSP starts at the top of guest RAM. */
#define KILN_HVC_BOOT_INFO   0x8000u  /* struct kiln_hvc_boot_info; RDI points here at entry */
#define KILN_HVC_CMDLINE     0x10000u /* the arguments joined by spaces, NUL-terminated */
#define KILN_HVC_CMDLINE_MAX 0xf0000u /* bytes including the NUL */
#define KILN_HVC_LOAD_MIN    0x100000u

/* Boot information, written by the host before entry (read-only by convention). */
struct kiln_hvc_boot_info {
    uint32_t version;   /* OUT: KILN_HVC_VERSION of the host */
    uint32_t size;      /* OUT: sizeof(struct kiln_hvc_boot_info) the host wrote */
    uint64_t mem_size;  /* OUT: bytes of guest RAM, from 0 (all identity-mapped) */
    uint64_t tsc_khz;   /* OUT: TSC frequency in kHz, 0 when unknown */
    uint64_t boot_ns;   /* OUT: host CLOCK_REALTIME at entry, ns since the epoch */
    uint64_t cmdline;   /* OUT: gpa of the NUL-terminated command line */
    uint64_t image_end; /* OUT: first byte past the loaded program (heap may start here) */
    uint32_t argc;      /* OUT: arguments, as KILN_HVC_CMDSIZE reports */
    uint32_t envc;      /* OUT: environment entries */
    uint32_t flags;     /* OUT: KILN_HVC_BOOT_* */
    uint32_t reserved;
};
_Static_assert(sizeof(struct kiln_hvc_boot_info) == 64, "kiln_hvc_boot_info size");
#define KILN_HVC_BOOT_MOUNT 1u /* a --mount directory is present: file calls may succeed */

/* ---- calls --------------------------------------------------------------------------------------
 */
#define KILN_HVC_PORT_BASE 0x500u
#define KILN_HVC_PORT(nr)  (KILN_HVC_PORT_BASE + (nr))

enum kiln_hvc_call {
    KILN_HVC_WRITE = 1,
    KILN_HVC_READ = 2,
    KILN_HVC_OPEN = 3,
    KILN_HVC_CLOSE = 4,
    KILN_HVC_LSEEK = 5,
    KILN_HVC_UNLINK = 6,
    KILN_HVC_FSTAT = 7,
    KILN_HVC_EXIT = 8,
    KILN_HVC_CMDSIZE = 9,
    KILN_HVC_CMDVAL = 10,
    KILN_HVC_CLOCK = 11,
    KILN_HVC_NCALLS = 12, /* one past the last call number */
};

/* Standard descriptors: 0 reads the host's stdin, 1 and 2 write its stdout and stderr. */
#define KILN_HVC_MAX_PATH 4096u      /* bytes of a path, without a NUL */
#define KILN_HVC_MAX_IO   (1u << 30) /* bytes of one read or write */
#define KILN_HVC_EXIT_MAX 239u       /* largest exit code a guest may ask for */

/* write(fd, buf, len): bytes written or -errno. */
struct kiln_hvc_write {
    uint64_t fd;  /* IN */
    uint64_t buf; /* IN: gpa */
    uint64_t len; /* IN: at most KILN_HVC_MAX_IO */
    int64_t ret;  /* OUT */
};
_Static_assert(sizeof(struct kiln_hvc_write) == 32, "kiln_hvc_write size");

/* read(fd, buf, len): bytes read (0 at end of file) or -errno. */
struct kiln_hvc_read {
    uint64_t fd;  /* IN */
    uint64_t buf; /* IN: gpa */
    uint64_t len; /* IN: at most KILN_HVC_MAX_IO */
    int64_t ret;  /* OUT */
};
_Static_assert(sizeof(struct kiln_hvc_read) == 32, "kiln_hvc_read size");

/* Flags of KILN_HVC_OPEN (not the host's O_* values). */
#define KILN_HVC_O_RDONLY  0x0u
#define KILN_HVC_O_WRONLY  0x1u
#define KILN_HVC_O_RDWR    0x2u
#define KILN_HVC_O_ACCMODE 0x3u
#define KILN_HVC_O_CREAT   0x100u
#define KILN_HVC_O_EXCL    0x200u
#define KILN_HVC_O_TRUNC   0x400u
#define KILN_HVC_O_APPEND  0x800u

/* open(path, flags, mode) beneath the --mount directory: a descriptor or -errno. */
struct kiln_hvc_open {
    uint64_t path;     /* IN: gpa of the path bytes (relative; no NUL needed) */
    uint64_t path_len; /* IN: 1..KILN_HVC_MAX_PATH */
    uint32_t flags;    /* IN: KILN_HVC_O_* */
    uint32_t mode;     /* IN: permission bits for O_CREAT (masked with 0777) */
    int64_t ret;       /* OUT */
};
_Static_assert(sizeof(struct kiln_hvc_open) == 32, "kiln_hvc_open size");

/* close(fd): 0 or -errno. */
struct kiln_hvc_close {
    uint64_t fd; /* IN */
    int64_t ret; /* OUT */
};
_Static_assert(sizeof(struct kiln_hvc_close) == 16, "kiln_hvc_close size");

#define KILN_HVC_SEEK_SET 0u
#define KILN_HVC_SEEK_CUR 1u
#define KILN_HVC_SEEK_END 2u

/* lseek(fd, offset, whence): the new offset or -errno. */
struct kiln_hvc_lseek {
    uint64_t fd;     /* IN */
    int64_t offset;  /* IN */
    uint32_t whence; /* IN: KILN_HVC_SEEK_* */
    uint32_t pad;    /* zero */
    int64_t ret;     /* OUT */
};
_Static_assert(sizeof(struct kiln_hvc_lseek) == 32, "kiln_hvc_lseek size");

/* unlink(path) beneath the --mount directory: 0 or -errno. */
struct kiln_hvc_unlink {
    uint64_t path;     /* IN: gpa */
    uint64_t path_len; /* IN: 1..KILN_HVC_MAX_PATH */
    int64_t ret;       /* OUT */
};
_Static_assert(sizeof(struct kiln_hvc_unlink) == 24, "kiln_hvc_unlink size");

#define KILN_HVC_S_REG 1u /* the only kind of file a guest can open */

/* fstat(fd). */
struct kiln_hvc_fstat {
    uint64_t fd;      /* IN */
    uint64_t size;    /* OUT: bytes */
    int64_t mtime_ns; /* OUT: last modification, ns since the epoch */
    uint32_t kind;    /* OUT: KILN_HVC_S_* (0 for the standard descriptors) */
    uint32_t mode;    /* OUT: permission bits */
    int64_t ret;      /* OUT: 0 or -errno */
};
_Static_assert(sizeof(struct kiln_hvc_fstat) == 40, "kiln_hvc_fstat size");

/* exit(code): ends the VM; kiln exits with code (0..KILN_HVC_EXIT_MAX). Never returns. */
struct kiln_hvc_exit {
    uint64_t code; /* IN */
};
_Static_assert(sizeof(struct kiln_hvc_exit) == 8, "kiln_hvc_exit size");

/* cmdsize: how much room the arguments and environment take (for KILN_HVC_CMDVAL). */
struct kiln_hvc_cmdsize {
    uint64_t argc;      /* OUT */
    uint64_t arg_bytes; /* OUT: all argument strings with their NULs */
    uint64_t envc;      /* OUT */
    uint64_t env_bytes; /* OUT */
};
_Static_assert(sizeof(struct kiln_hvc_cmdsize) == 32, "kiln_hvc_cmdsize size");

/* cmdval: the host fills argv (argc + 1 uint64_t gpas, the last 0) with pointers into argbuf
 * (arg_bytes long), and envp/envbuf alike. Returns 0 or -errno. */
struct kiln_hvc_cmdval {
    uint64_t argv;   /* IN: gpa of (argc + 1) * 8 bytes */
    uint64_t argbuf; /* IN: gpa of arg_bytes bytes */
    uint64_t envp;   /* IN: gpa of (envc + 1) * 8 bytes */
    uint64_t envbuf; /* IN: gpa of env_bytes bytes */
    int64_t ret;     /* OUT */
};
_Static_assert(sizeof(struct kiln_hvc_cmdval) == 40, "kiln_hvc_cmdval size");

/* clock: the host's clocks. */
struct kiln_hvc_clock {
    uint64_t monotonic_ns; /* OUT: since the VM started */
    uint64_t realtime_ns;  /* OUT: since the epoch */
};
_Static_assert(sizeof(struct kiln_hvc_clock) == 16, "kiln_hvc_clock size");

/* ---- the console UART ---------------------------------------------------------------------------
 * A write-only 16550 at COM1: bytes written to KILN_HVC_UART_PORT go to stdout; the line status
 * register (port + 5) reads "transmitter empty". For early output and for runtimes that also boot
 * elsewhere (QEMU's PVH path has the same UART). */
#define KILN_HVC_UART_PORT 0x3f8u

#endif
