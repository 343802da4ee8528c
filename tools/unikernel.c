/* unikernel.c: `kiln unikernel`: runs a freestanding ELF on kiln's hypercall ABI
 * (docs/unikernel.md). */
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/lib.h"
#include "tools.h"
#include "unikernel/uk.h"

#define MAX_ENV 256

/* Sanitizer builds check for leaks at exit, so they always tear the VM down themselves. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static const char usage_unikernel[] =
    "usage: kiln unikernel [OPTIONS] APP.elf [-- ARGS...]\n"
    "\n"
    "Runs a freestanding 64-bit ELF built against include/kiln/hvc.h (guest/unikernel's runtime)\n"
    "without a kernel: long mode from the first instruction, hypercalls for I/O.\n"
    "\n"
    "  --mem SIZE            guest RAM, 16M to 3G (default 64M)\n"
    "  --mount DIR           the directory the guest's files live in (none: file calls fail)\n"
    "  --env NAME=VALUE      an environment entry for the guest (repeatable; none by default)\n"
    "  --timeout SECONDS     stop the guest after this long (exit code 124)\n"
    "  --trace-hypercalls    log every hypercall and its result on stderr\n"
    "  --stats FILE          write a JSON summary (exit, set-up times) at exit\n"
    "  --kvm PATH            the KVM device (default /dev/kvm)\n"
    "  --full-teardown       destroy the VM before exiting (default: a helper process that\n"
    "                        shares kiln's memory and descriptors does it after kiln exits)\n"
    "  -v, --verbose         more log output (repeat for debug)\n"
    "  -q, --quiet           errors only\n"
    "\n"
    "Exit codes: the guest's own (0 to 239) when it calls exit; 1 host error, 2 bad usage or a\n"
    "refused ELF, 124 timeout, 130 SIGINT, 143 SIGTERM, 240 bad guest pointer, 241 malformed\n"
    "hypercall, 242 unknown I/O port, 243 triple fault, 244 other vCPU stop "
    "(docs/exit-codes.md).\n";

enum {
    OPT_MEM = 256,
    OPT_MOUNT,
    OPT_ENV,
    OPT_TIMEOUT,
    OPT_TRACE,
    OPT_STATS,
    OPT_KVM,
    OPT_FULL_TEARDOWN
};

static const struct option options[] = {
    {"mem", required_argument, NULL, OPT_MEM},
    {"mount", required_argument, NULL, OPT_MOUNT},
    {"env", required_argument, NULL, OPT_ENV},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"trace-hypercalls", no_argument, NULL, OPT_TRACE},
    {"stats", required_argument, NULL, OPT_STATS},
    {"kvm", required_argument, NULL, OPT_KVM},
    {"full-teardown", no_argument, NULL, OPT_FULL_TEARDOWN},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "kiln unikernel: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(kiln unikernel --help lists the options)\n");
    return 2;
}

static int kept[UK_KEPT_FDS];

/* Closes [from, to] (to >= from); close_range needs Linux 5.9, so fall back to a bounded loop. */
static void close_span(unsigned from, unsigned to)
{
    if (close_range(from, to, 0) < 0)
        for (unsigned fd = from; fd <= to && fd < 4096; fd++)
            close((int)fd);
}

/* Closes every descriptor but the kept ones. */
static void close_all_but_kept(void)
{
    int sorted[UK_KEPT_FDS];
    unsigned from = 0;

    memcpy(sorted, kept, sizeof(sorted));
    for (unsigned i = 1; i < UK_KEPT_FDS; i++)
        for (unsigned j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            int t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    for (unsigned i = 0; i < UK_KEPT_FDS; i++) {
        if (sorted[i] < 0 || (unsigned)sorted[i] < from)
            continue;
        if ((unsigned)sorted[i] > from)
            close_span(from, (unsigned)sorted[i] - 1);
        from = (unsigned)sorted[i] + 1;
    }
    close_span(from, ~0U);
}

/* Called through a pointer, so it is bound when kiln loads: the child below shares the exiting
 * parent's thread state and must not enter the dynamic linker's lazy binding. */
static int (*volatile close_fd)(int) = close;

static int teardown(void *unused)
{
    (void)unused;
    /* The exited parent's descriptor table and memory are this child's now, so these closes and
     * this exit drop the last references: KVM destroys the VM here. */
    for (unsigned i = 0; i < UK_KEPT_FDS; i++)
        if (kept[i] >= 0)
            close_fd(kept[i]);
    return 0;
}

/* Exits with `code` before KVM has torn the VM down. Closing the last descriptor of a VM (or
 * exiting with it open) destroys it synchronously, before the parent's wait returns: ~0.3-2 ms on
 * PVM, ~45 ms in the test bed. A child made with CLONE_VM | CLONE_FILES keeps the descriptor
 * table and the address space alive, so this process's exit drops references only, and the child
 * (reparented to init, which reaps it) closes the VM afterwards. Every other descriptor, the
 * standard streams and inherited ones included, is closed first: whoever reads kiln's output sees
 * end-of-file when kiln exits, not when the teardown ends. */
static _Noreturn void exit_before_teardown(int code)
{
    static char stack[16384] __attribute__((aligned(16)));

    fflush(stdout);
    fflush(stderr);
    close_all_but_kept();
    /* On failure the VM is destroyed by this exit instead: slower, same result. */
    (void)clone(teardown, stack + sizeof(stack), CLONE_VM | CLONE_FILES | SIGCHLD, NULL);
    _exit(code);
}

int cmd_unikernel(int argc, char **argv, uint64_t start_ns)
{
    static char *envp[MAX_ENV];
    struct uk_config cfg = {.mem_size = UK_MEM_DEFAULT, .envp = envp, .keep_vm = !SANITIZED};
    int verbosity = 0, opt, first, code;
    uint64_t v;

    /* getopt_long wants argv[0]; "+" stops at APP.elf so the guest's own flags stay its own. */
    argc++;
    argv--;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+vqh", options, NULL)) != -1) {
        switch (opt) {
        case OPT_MEM:
            if (parse_size(optarg, &v) < 0 || v < UK_MEM_MIN || v > UK_MEM_MAX)
                return usage_error("invalid --mem '%s': give 16M to 3G (e.g. 64M)", optarg);
            cfg.mem_size = v;
            break;
        case OPT_MOUNT:
            cfg.mount = optarg;
            break;
        case OPT_ENV:
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return usage_error("invalid --env '%s': give NAME=VALUE", optarg);
            if (cfg.envc == MAX_ENV)
                return usage_error("too many --env entries (at most 256), at '%s'", optarg);
            envp[cfg.envc++] = optarg;
            break;
        case OPT_TIMEOUT:
            if (parse_uint(optarg, 1, 86400, &v) < 0)
                return usage_error("invalid --timeout '%s': give 1 to 86400 seconds", optarg);
            cfg.timeout_s = (unsigned)v;
            break;
        case OPT_TRACE:
            cfg.trace = true;
            break;
        case OPT_STATS:
            cfg.stats_path = optarg;
            break;
        case OPT_KVM:
            cfg.kvm_path = optarg;
            break;
        case OPT_FULL_TEARDOWN:
            cfg.keep_vm = false;
            break;
        case 'v':
            verbosity++;
            break;
        case 'q':
            verbosity = -1;
            break;
        case 'h':
            fputs(usage_unikernel, stdout);
            return 0;
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("%s", "no APP.elf given");
    cfg.elf_path = argv[optind];
    /* The guest's argv: the ELF path, then everything after "--" (which the path overwrites). */
    first = optind;
    if (optind + 1 < argc) {
        if (strcmp(argv[optind + 1], "--") != 0)
            return usage_error("unexpected '%s' after APP.elf: put guest arguments after --",
                               argv[optind + 1]);
        argv[optind + 1] = argv[optind];
        first = optind + 1;
    }
    cfg.argv = &argv[first];
    cfg.argc = (unsigned)(argc - first);
    log_set_level(verbosity < 0    ? LOG_ERROR
                  : verbosity == 0 ? LOG_WARN
                  : verbosity == 1 ? LOG_INFO
                                   : LOG_DEBUG);
    code = uk_run(&cfg, start_ns, kept);
    if (cfg.keep_vm)
        exit_before_teardown(code);
    return code;
}
