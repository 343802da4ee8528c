/* args.c: `kiln run` options: every value checked, every mistake named. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/x86.h"
#include "cli.h"
#include "fileservice/fileservice.h"
#include "lib/lib.h"
#include "machine/machine.h"

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

/* Splits "a,b,c" in place: returns the next comma-separated item and advances *rest (NULL at the
 * end). */
static char *next_item(char **rest)
{
    char *item = *rest, *comma = strchr(item, ',');

    if (comma) {
        *comma = '\0';
        *rest = comma + 1;
    } else {
        *rest = NULL;
    }
    return item;
}

/* "key=value" items: returns value if item starts with key=, else NULL. */
static const char *item_value(const char *item, const char *key)
{
    size_t n = strlen(key);

    return !strncmp(item, key, n) && item[n] == '=' ? item + n + 1 : NULL;
}

static int parse_rate(const char *opt, const char *item, const char *v, uint64_t *out, char *err,
                      size_t errlen)
{
    if (parse_size(v, out) < 0 || *out == 0) {
        snprintf(err, errlen, "invalid %s '%s': give bytes per second above 0, e.g. bw=10M", opt,
                 item);
        return -EINVAL;
    }
    return 0;
}

static int parse_count(const char *opt, const char *item, const char *v, uint64_t *out, char *err,
                       size_t errlen)
{
    if (parse_uint(v, 1, UINT32_MAX, out) < 0) {
        snprintf(err, errlen, "invalid %s '%s': give a whole number from 1 to %u per second", opt,
                 item, UINT32_MAX);
        return -EINVAL;
    }
    return 0;
}

/* --disk PATH[,ro][,bw=RATE][,iops=N] */
static int parse_disk(struct cli_run *out, const char *value, char *err, size_t errlen)
{
    struct machine_config *cfg = &out->cfg;
    struct virtio_blk_config *d;
    char *rest, *item;

    if (cfg->ndisks >= MACHINE_MAX_DISKS) {
        snprintf(err, errlen, "too many --disk options: at most %d", MACHINE_MAX_DISKS);
        return -EINVAL;
    }
    if (out->nstrings >= CLI_MAX_STRINGS || strlen(value) >= sizeof(out->strings[0]))
        return bad(err, errlen, "--disk", value, "too long");
    rest = strcpy(out->strings[out->nstrings++], value);
    d = &cfg->disks[cfg->ndisks];
    memset(d, 0, sizeof(*d));
    d->path = next_item(&rest);
    if (!*d->path)
        return bad(err, errlen, "--disk", value, "give PATH[,ro][,bw=RATE][,iops=N]");
    while (rest) {
        const char *v;
        item = next_item(&rest);
        if (!strcmp(item, "ro")) {
            d->read_only = true;
        } else if (!strcmp(item, "rw")) {
            d->read_only = false;
        } else if ((v = item_value(item, "bw"))) {
            if (parse_rate("--disk", item, v, &d->limit.bytes_per_s, err, errlen) < 0)
                return -EINVAL;
        } else if ((v = item_value(item, "iops"))) {
            if (parse_count("--disk", item, v, &d->limit.ops_per_s, err, errlen) < 0)
                return -EINVAL;
        } else {
            snprintf(err, errlen,
                     "invalid --disk option '%s' in '%s': valid are ro, rw, bw=RATE, iops=N", item,
                     value);
            return -EINVAL;
        }
    }
    cfg->ndisks++;
    return 0;
}

static int parse_mac(const char *text, uint8_t mac[6])
{
    unsigned b[6];
    char end;

    if (strlen(text) != 17 || sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3],
                                     &b[4], &b[5], &end) != 6)
        return -EINVAL;
    for (unsigned i = 0; i < 6; i++) {
        if (text[i * 3] == '+' || text[i * 3] == '-' || text[i * 3 + 1] == ':')
            return -EINVAL;
        mac[i] = (uint8_t)b[i];
    }
    return (mac[0] & 1) ? -EINVAL : 0; /* a multicast address cannot be a NIC's */
}

/* --net tap=NAME[,mac=XX:XX:XX:XX:XX:XX][,bw=RATE][,pps=N] */
static int parse_net(struct cli_run *out, const char *value, char *err, size_t errlen)
{
    struct virtio_net_config *n = &out->cfg.net_cfg;
    char *rest, *item;

    if (out->cfg.net) {
        snprintf(err, errlen, "--net given twice: kiln gives a VM one network device");
        return -EINVAL;
    }
    if (out->nstrings >= CLI_MAX_STRINGS || strlen(value) >= sizeof(out->strings[0]))
        return bad(err, errlen, "--net", value, "too long");
    rest = strcpy(out->strings[out->nstrings++], value);
    memset(n, 0, sizeof(*n));
    while (rest) {
        const char *v;
        item = next_item(&rest);
        if ((v = item_value(item, "tap"))) {
            size_t len = strlen(v);
            if (len == 0 || len >= CLI_IFNAMSIZ || strpbrk(v, "/ \t\n:") || !strcmp(v, ".") ||
                !strcmp(v, "..")) {
                snprintf(err, errlen,
                         "invalid --net tap name '%s': 1 to %d characters, no '/', ':' or spaces",
                         v, CLI_IFNAMSIZ - 1);
                return -EINVAL;
            }
            n->tap = v;
        } else if ((v = item_value(item, "mac"))) {
            if (parse_mac(v, n->mac) < 0) {
                snprintf(err, errlen,
                         "invalid --net mac '%s': give six hex bytes like 52:54:00:12:34:56 "
                         "(unicast: the first byte even)",
                         v);
                return -EINVAL;
            }
            n->mac_set = true;
        } else if ((v = item_value(item, "bw"))) {
            if (parse_rate("--net", item, v, &n->rx_limit.bytes_per_s, err, errlen) < 0)
                return -EINVAL;
            n->tx_limit.bytes_per_s = n->rx_limit.bytes_per_s;
        } else if ((v = item_value(item, "pps"))) {
            if (parse_count("--net", item, v, &n->rx_limit.ops_per_s, err, errlen) < 0)
                return -EINVAL;
            n->tx_limit.ops_per_s = n->rx_limit.ops_per_s;
        } else {
            snprintf(
                err, errlen,
                "invalid --net option '%s' in '%s': valid are tap=NAME, mac=XX:XX:XX:XX:XX:XX, "
                "bw=RATE, pps=N",
                item, value);
            return -EINVAL;
        }
    }
    if (!n->tap)
        return bad(err, errlen, "--net", value, "name the tap device: tap=NAME[,mac=...]");
    out->cfg.net = true;
    return 0;
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
    } else if (VALUE("--disk")) {
        if (r > 0 && parse_disk(out, v, err, errlen) < 0)
            return -EINVAL;
    } else if (VALUE("--net")) {
        if (r > 0 && parse_net(out, v, err, errlen) < 0)
            return -EINVAL;
    } else if (VALUE("--vsock")) {
        if (r > 0 && !*v)
            return bad(err, errlen, "--vsock", v, "give the path of the host-side Unix socket");
        if (r > 0) {
            cfg->vsock = true;
            cfg->vsock_path = v;
        }
    } else if (VALUE("--cid")) {
        if (r > 0 && parse_uint(v, 3, UINT32_MAX - 1, &n) < 0)
            return bad(err, errlen, "--cid", v,
                       "give the guest's vsock CID, a whole number from 3 to 4294967294 "
                       "(0-2 are reserved)");
        if (r > 0)
            cfg->vsock_cid = n;
    } else if (VALUE("--balloon")) {
        if (r > 0 && (parse_size(v, &n) < 0 || n % 4096))
            return bad(err, errlen, "--balloon", v,
                       "give the memory to take from the guest, a multiple of 4K, e.g. 64M (0: "
                       "none yet)");
        if (r > 0) {
            cfg->balloon = true;
            cfg->balloon_cfg.target_pages = n / 4096;
            cfg->balloon_cfg.deflate_on_oom = true;
        }
    } else if (VALUE("--name")) {
        if (r > 0 && !rundir_name_valid(v))
            return bad(err, errlen, "--name", v,
                       "1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with '.'");
        if (r > 0)
            cfg->name = v;
    } else if (VALUE("--files")) {
        if (r > 0 && (!*v || cfg->files_dir))
            return bad(err, errlen, "--files", v,
                       cfg->files_dir ? "given twice: a VM serves one directory (add single "
                                        "files with --file)"
                                      : "give a host directory to serve read-only");
        if (r > 0)
            cfg->files_dir = v;
    } else if (VALUE("--file")) {
        size_t name_len;
        if (r > 0 && fsvc_file_spec_check(v, &name_len, err, errlen) < 0)
            return -EINVAL;
        if (r > 0 && cfg->nfiles >= MACHINE_MAX_FILES) {
            snprintf(err, errlen, "too many --file options: at most %d", MACHINE_MAX_FILES);
            return -EINVAL;
        }
        if (r > 0)
            cfg->files[cfg->nfiles++] = v;
    } else if (VALUE("--ready-fd")) {
        if (r > 0 && parse_uint(v, 3, 65535, &n) < 0)
            return bad(err, errlen, "--ready-fd", v,
                       "give an open descriptor from 3 to 65535 (libkiln's READY pipe)");
        if (r > 0)
            cfg->ready_fd = (int)n;
    } else if (!strcmp(argv[*i], "--detach")) {
        out->detach = true;
    } else if (!strcmp(argv[*i], "--no-vsock")) {
        out->no_vsock = true;
    } else if (!strcmp(argv[*i], "--rng")) {
        cfg->rng = true;
    } else if (!strcmp(argv[*i], "--no-rng")) {
        out->no_rng = true;
    } else if (!strcmp(argv[*i], "--no-acpi")) {
        cfg->acpi = false;
    } else if (!strcmp(argv[*i], "--no-hugepages")) {
        cfg->hugepages = false;
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

/* Checks that need every option: conflicts, and the default image's devices. */
static int finish(struct cli_run *out, char *err, size_t errlen)
{
    struct machine_config *cfg = &out->cfg;

    if (out->no_vsock && cfg->vsock) {
        snprintf(err, errlen, "--vsock and --no-vsock do not go together");
        return -EINVAL;
    }
    if (out->no_rng && cfg->rng) {
        snprintf(err, errlen, "--rng and --no-rng do not go together");
        return -EINVAL;
    }
    /* The default image talks to its agent over vsock and wants entropy early. */
    if (!cfg->kernel_path) {
        cfg->vsock = cfg->vsock || !out->no_vsock;
        cfg->rng = cfg->rng || !out->no_rng;
    }
    if ((cfg->files_dir || cfg->nfiles) && !cfg->vsock) {
        snprintf(err, errlen,
                 "--files and --file are served over vsock: add --vsock PATH (or drop "
                 "--no-vsock)");
        return -EINVAL;
    }
    if ((out->detach || cfg->ready_fd) && !cfg->vsock) {
        snprintf(err, errlen,
                 "--detach waits for the guest agent over vsock: add --vsock PATH "
                 "(or drop --no-vsock)");
        return -EINVAL;
    }
    if (cfg->vsock_cid && !cfg->vsock) {
        snprintf(err, errlen,
                 "--cid is for the vsock device: add --vsock PATH (or drop --no-vsock)");
        return -EINVAL;
    }
    if (cfg->balloon && cfg->balloon_cfg.target_pages * 4096 >= cfg->mem_size) {
        snprintf(
            err, errlen,
            "--balloon of %llu MiB would take all of the guest's %llu MiB: give less than --mem",
            (unsigned long long)(cfg->balloon_cfg.target_pages * 4096 >> 20),
            (unsigned long long)(cfg->mem_size >> 20));
        return -EINVAL;
    }
    if (out->cfg.cmdline && out->append) {
        snprintf(err, errlen,
                 "--cmdline and --append do not go together: --cmdline replaces the "
                 "whole command line, --append adds to the default one");
        return -EINVAL;
    }
    return 0;
}

int cli_parse_run(int argc, char *const argv[], struct cli_run *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->cfg.mem_size = CLI_DEFAULT_MEM;
    out->cfg.ncpus = CLI_DEFAULT_CPUS;
    out->cfg.acpi = true;
    out->cfg.hugepages = true;

    for (int i = 0; i < argc; i++) {
        int ret = parse_option(argc, argv, &i, out, err, errlen);
        if (ret < 0)
            return ret;
    }
    return finish(out, err, errlen);
}
