/* args.c: `kiln run` options: every value checked, every mistake named. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/x86.h"
#include "cli.h"
#include "lib/lib.h"

/* Matches "--name value" and "--name=value"; advances *i past what it consumed. Returns 1 when
 * matched with *value set, 0 when argv[*i] is another option, -EINVAL when the value is missing. */
static int take_value(int argc, char *const argv[], int *i, const char *name, const char **value,
                      char *err, size_t errlen)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        snprintf(err, errlen, "%s needs a value", name);
        return -EINVAL;
    }
    *value = argv[++*i];
    return 1;
}

static int bad(char *err, size_t errlen, const char *opt, const char *value, const char *valid)
{
    snprintf(err, errlen, "invalid %s '%s': %s", opt, value, valid);
    return -EINVAL;
}

static int parse_option(int argc, char *const argv[], int *i, struct cli_run *out, char *err,
                        size_t errlen)
{
    struct machine_config *cfg = &out->cfg;
    const char *v;
    uint64_t n;
    int r;

#define VALUE(name) ((r = take_value(argc, argv, i, name, &v, err, errlen)) != 0)
    if (VALUE("--kernel")) {
        cfg->kernel_path = v;
    } else if (VALUE("--initrd")) {
        cfg->initrd_path = v;
    } else if (VALUE("--cmdline")) {
        cfg->cmdline = v;
    } else if (VALUE("--append")) {
        out->append = v;
    } else if (VALUE("--console")) {
        if (r > 0 && !*v)
            return bad(err, errlen, "--console", v, "give a file path");
        cfg->console_path = v;
    } else if (VALUE("--stats")) {
        cfg->stats_path = v;
    } else if (VALUE("--kvm")) {
        cfg->kvm_path = v;
    } else if (VALUE("--cpus")) {
        if (r > 0 && parse_uint(v, 1, X86_MAX_CPUS, &n) < 0) {
            snprintf(err, errlen, "invalid --cpus '%s': give a whole number from 1 to %u", v,
                     X86_MAX_CPUS);
            return -EINVAL;
        }
        if (r > 0)
            cfg->ncpus = (unsigned)n;
    } else if (VALUE("--mem")) {
        if (r > 0 && (parse_size(v, &n) < 0 || n < GUEST_MEM_MIN_SIZE || n > GUEST_MEM_MAX_SIZE))
            return bad(err, errlen, "--mem", v,
                       "give a size from 16M to 1T, e.g. 256M or 2G (a bare number is bytes)");
        if (r > 0)
            cfg->mem_size = n;
    } else if (VALUE("--timeout")) {
        if (r > 0 && parse_uint(v, 1, CLI_MAX_TIMEOUT_S, &n) < 0)
            return bad(err, errlen, "--timeout", v, "give whole seconds from 1 to 604800");
        if (r > 0)
            cfg->timeout_s = (unsigned)n;
    } else if (!strcmp(argv[*i], "--no-acpi")) {
        cfg->acpi = false;
    } else if (!strcmp(argv[*i], "-v") || !strcmp(argv[*i], "--verbose")) {
        out->verbosity++;
    } else if (!strcmp(argv[*i], "-q") || !strcmp(argv[*i], "--quiet")) {
        out->verbosity--;
    } else if (!strcmp(argv[*i], "-h") || !strcmp(argv[*i], "--help")) {
        out->help = true;
    } else {
        snprintf(err, errlen, "unknown option '%s' for kiln run (see kiln run --help)", argv[*i]);
        return -EINVAL;
    }
#undef VALUE
    return r < 0 ? r : 0;
}

int cli_parse_run(int argc, char *const argv[], struct cli_run *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->cfg.mem_size = CLI_DEFAULT_MEM;
    out->cfg.ncpus = CLI_DEFAULT_CPUS;
    out->cfg.acpi = true;

    for (int i = 0; i < argc; i++) {
        int ret = parse_option(argc, argv, &i, out, err, errlen);
        if (ret < 0)
            return ret;
    }
    if (out->cfg.cmdline && out->append) {
        snprintf(err, errlen,
                 "--cmdline and --append do not go together: --cmdline replaces the "
                 "whole command line, --append adds to the default one");
        return -EINVAL;
    }
    return 0;
}
