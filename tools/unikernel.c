/* unikernel.c: `kiln unikernel`: runs a freestanding ELF on kiln's hypercall ABI
 * (docs/unikernel.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lib.h"
#include "tools.h"
#include "unikernel/uk.h"

#define MAX_ENV 256

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
    "  -v, --verbose         more log output (repeat for debug)\n"
    "  -q, --quiet           errors only\n"
    "\n"
    "Exit codes: the guest's own (0 to 239) when it calls exit; 1 host error, 2 bad usage or a\n"
    "refused ELF, 124 timeout, 130 SIGINT, 143 SIGTERM, 240 bad guest pointer, 241 malformed\n"
    "hypercall, 242 unknown I/O port, 243 triple fault, 244 other vCPU stop "
    "(docs/exit-codes.md).\n";

enum { OPT_MEM = 256, OPT_MOUNT, OPT_ENV, OPT_TIMEOUT, OPT_TRACE, OPT_STATS, OPT_KVM };

static const struct option options[] = {
    {"mem", required_argument, NULL, OPT_MEM},
    {"mount", required_argument, NULL, OPT_MOUNT},
    {"env", required_argument, NULL, OPT_ENV},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"trace-hypercalls", no_argument, NULL, OPT_TRACE},
    {"stats", required_argument, NULL, OPT_STATS},
    {"kvm", required_argument, NULL, OPT_KVM},
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

int cmd_unikernel(int argc, char **argv, uint64_t start_ns)
{
    static char *envp[MAX_ENV];
    struct uk_config cfg = {.mem_size = UK_MEM_DEFAULT, .envp = envp};
    int verbosity = 0, opt, first;
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
    return uk_run(&cfg, start_ns);
}
