/* doctor.c: `kiln doctor`, and the warning `kiln run` gives on hosts whose KVM cannot run Linux. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doctor/doctor.h"
#include "lib/lib.h"
#include "tools.h"

#define EXIT_USAGE 64 /* sysexits' EX_USAGE: 1 and 2 are verdicts */

static const char usage_doctor[] =
    "usage: kiln doctor [--quiet | --json] [--kvm PATH]\n"
    "\n"
    "Reports what this host offers kiln (the KVM device and its capabilities, /dev/net/tun,\n"
    "/dev/vhost-vsock, /dev/vhost-net, cgroup v2, user namespaces, the CPU) and decides, by "
    "running\n"
    "a tiny probe guest, whether Linux guests can run here (docs/doctor.md).\n"
    "\n"
    "  --quiet, -q   print only the verdict line\n"
    "  --json        print one JSON object instead of the report\n"
    "  --kvm PATH    the KVM device (default /dev/kvm)\n"
    "\n"
    "Exit codes: 0 Linux guests can run here, 2 the KVM device exists but cannot run them (e.g.\n"
    "PVM), 1 no usable KVM device, 64 bad usage.\n";

/* Writes s as a JSON string literal. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void print_json(const struct doctor_report *rep, const char *verdict)
{
    printf("{\"kvm_path\": ");
    json_string(stdout, rep->kvm_path);
    printf(", \"checks\": [");
    for (unsigned i = 0; i < rep->nchecks; i++) {
        const struct doctor_check *c = &rep->checks[i];

        printf("%s{\"name\": ", i ? ", " : "");
        json_string(stdout, c->name);
        printf(", \"status\": \"%s\", \"required\": %s, \"detail\": ", doctor_state_name(c->state),
               c->required ? "true" : "false");
        json_string(stdout, c->detail);
        printf("}");
    }
    printf("], \"probe\": ");
    if (rep->probed) {
        printf("{\"status\": \"%s\", \"reason\": ", probe_status_name(rep->probe.status));
        json_string(stdout, rep->probe.reason);
        printf(", \"elapsed_ms\": %.3f}", (double)rep->probe.elapsed_ns / 1e6);
    } else {
        printf("null");
    }
    printf(", \"linux_guests\": %s, \"exit_code\": %d, \"verdict\": ",
           rep->exit_code == 0 ? "true" : "false", rep->exit_code);
    json_string(stdout, verdict);
    printf("}\n");
}

static void print_report(const struct doctor_report *rep, const char *verdict)
{
    for (unsigned i = 0; i < rep->nchecks; i++) {
        const struct doctor_check *c = &rep->checks[i];

        printf("%-8s %-30s %s\n", doctor_state_name(c->state), c->name, c->detail);
    }
    printf("%s\n", verdict);
}

/* Refreshes the cache `kiln run` reads, so the next run need not probe again. Best effort. */
static void store_verdict(const struct doctor_report *rep)
{
    struct probe_cache_key key;
    char path[512];

    if (rep->probed && probe_cache_key(rep->kvm_path, NULL, &key) == 0 &&
        probe_cache_path(path, sizeof(path)) == 0)
        (void)probe_cache_store(path, &key, &rep->probe);
}

int cmd_doctor(int argc, char **argv)
{
    static struct doctor_report rep;
    const char *kvm_path = NULL;
    bool quiet = false, json = false;
    char verdict[1024];

    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = true;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--kvm") || !strncmp(argv[i], "--kvm=", 6)) {
            kvm_path = argv[i][5] == '=' ? argv[i] + 6 : i + 1 < argc ? argv[++i] : "";
            if (!kvm_path[0]) {
                fprintf(stderr, "kiln doctor: --kvm needs a path, e.g. --kvm /dev/kvm\n");
                return EXIT_USAGE;
            }
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_doctor, stdout);
            return 0;
        } else {
            fprintf(stderr, "kiln doctor: unknown option '%s'\n%s", argv[i], usage_doctor);
            return EXIT_USAGE;
        }
    }
    if (quiet && json) {
        fprintf(stderr, "kiln doctor: --quiet and --json exclude each other\n");
        return EXIT_USAGE;
    }

    doctor_collect(&rep, kvm_path, "", PROBE_TIMEOUT_MS);
    doctor_verdict(&rep, verdict, sizeof(verdict));
    store_verdict(&rep);
    if (json)
        print_json(&rep, verdict);
    else if (quiet)
        printf("%s\n", verdict);
    else
        print_report(&rep, verdict);
    return rep.exit_code;
}

void doctor_warn_if_unfit(const char *kvm_path)
{
    static bool done;
    const char *skip = getenv("KILN_NO_PROBE");
    struct probe_cache_key key;
    struct probe_result res;
    char path[512];
    bool cached;

    if (done || (skip && !strcmp(skip, "1")))
        return;
    done = true;
    /* No device, or no boot id: the run reports its own error; the probe has nothing to add. */
    if (probe_cache_key(kvm_path, NULL, &key) < 0 || probe_cache_path(path, sizeof(path)) < 0)
        return;
    cached = probe_cache_load(path, &key, &res) == 0;
    if (!cached) {
        if (probe_run(kvm_path, PROBE_TIMEOUT_MS, &res) < 0)
            return; /* the probe could not run: no verdict, no warning */
        (void)probe_cache_store(path, &key, &res);
    }
    if (res.status != PROBE_OK)
        log_warn("this host's KVM cannot run Linux guests (%s); kiln will likely hang or fail. "
                 "Run Linux guests in the test bed: tests/testbed/run.sh (see `kiln doctor`).",
                 res.reason);
}
