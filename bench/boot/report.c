/* report.c: the boot benchmark's statistics, human table and JSON (docs/benchmarks.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "bootbench.h"

const char *const vmm_name[NVMM] = {"kiln", "qemu"};

/* Targets are printed beside the figure, never checked: a benchmark reports, it does not judge. */
const struct metric metrics[NMETRIC] = {
    [M_MARK] = {"start_to_marker_ms", "process start -> marker line (userspace)", "ms",
                "kiln/qemu <= 0.5", 1, 1, 0},
    [M_EXIT] = {"start_to_exit_ms", "process start -> exit after immediate reboot", "ms",
                "kiln/qemu <= 0.5", 1, 1, 0},
    [M_SETUP] = {"kiln_setup_ms", "kiln set-up before first KVM_RUN", "ms", "< 5 ms", 1, 0, 1},
    [M_RSS] = {"kiln_rss_overhead_mib", "kiln RSS beyond guest RAM (anon+file)", "MiB", "< 5 MiB",
               1.0 / 1024, 0, 1},
    [M_BOOTTIMER] = {"kiln_boot_timer_ms", "kiln boot-timer write (kiln's clock)", "ms", "", 1, 0,
                     0},
    [M_MAXRSS] = {"peak_rss_mib", "peak RSS incl. touched guest RAM", "MiB", "", 1.0 / 1024, 1, 0},
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

struct summary bench_summarize(const struct series *s, double scale)
{
    struct summary r = {NAN, NAN, NAN, s->n};
    double v[BENCH_MAX_RUNS];
    int k;

    if (!s->n)
        return r;
    memcpy(v, s->v, sizeof(double) * (size_t)s->n);
    qsort(v, (size_t)s->n, sizeof(double), cmp_double);
    r.median = (s->n % 2 ? v[s->n / 2] : (v[s->n / 2 - 1] + v[s->n / 2]) / 2) * scale;
    k = (int)ceil(0.9 * s->n) - 1;
    r.p90 = v[k < 0 ? 0 : k] * scale;
    r.min = v[0] * scale;
    return r;
}

static int shown(const struct report_info *info, int m)
{
    return info->guest || metrics[m].host;
}

static void cell(double v)
{
    if (isnan(v))
        printf(" %9s", "-");
    else
        printf(" %9.2f", v);
}

void bench_print_table(const struct report_info *info, struct series data[NVMM][NMETRIC])
{
    printf("%-48s %9s %9s %9s", "metric (N runs each, none discarded)", "kiln med", "p90", "min");
    if (info->guest)
        printf(" %9s %9s %9s %9s", "qemu med", "p90", "min", "kiln/qemu");
    printf("  target\n");
    for (int m = 0; m < NMETRIC; m++) {
        const struct metric *mt = &metrics[m];
        struct summary k = bench_summarize(&data[KILN][m], mt->scale);
        struct summary q = bench_summarize(&data[QEMU][m], mt->scale);
        char label[80];

        if (!shown(info, m))
            continue;
        snprintf(label, sizeof(label), "%s (%s)", mt->label, mt->unit);
        printf("%-48s", label);
        cell(k.median), cell(k.p90), cell(k.min);
        if (info->guest && mt->both)
            cell(q.median), cell(q.p90), cell(q.min), cell(k.median / q.median);
        else if (info->guest)
            printf(" %9s %9s %9s %9s", "", "", "", "");
        printf("  %s\n", mt->target);
    }
    printf("failed runs: kiln %d", info->failures[KILN]);
    if (info->guest)
        printf(", qemu %d", info->failures[QEMU]);
    printf("\n");
}

static void json_val(FILE *f, double v)
{
    if (isnan(v))
        fputs("null", f);
    else
        fprintf(f, "%.3f", v);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_series(FILE *f, const struct series *s, double scale)
{
    struct summary r = bench_summarize(s, scale);

    fputs("{\"median\":", f);
    json_val(f, r.median);
    fputs(",\"p90\":", f);
    json_val(f, r.p90);
    fputs(",\"min\":", f);
    json_val(f, r.min);
    fprintf(f, ",\"n\":%d,\"samples\":[", r.n);
    for (int i = 0; i < s->n; i++) {
        fputs(i ? "," : "", f);
        json_val(f, s->v[i] * scale);
    }
    fputs("]}", f);
}

static void json_field(FILE *f, const char *key, const char *value)
{
    fprintf(f, ",\"%s\":", key);
    json_string(f, value);
}

void bench_write_json(FILE *f, const struct report_info *info, struct series data[NVMM][NMETRIC])
{
    struct utsname u;
    int first = 1;

    uname(&u);
    fprintf(f, "{\"bench\":\"boot\",\"mode\":\"%s\",\"n\":%d", info->mode, info->n);
    json_field(f, "place", *info->place ? info->place : u.nodename);
    json_field(f, "host_kernel", u.release);
    json_field(f, "guest_kernel", info->kernel);
    json_field(f, "guest_mem", info->mem);
    json_field(f, "cmdline", info->cmdline);
    if (info->guest) {
        json_field(f, "qemu_command", info->qemu_command);
        json_field(f, "exit_method",
                   "kiln.exit=reboot and reboot=k for both: kiln exits with code 3 on the i8042 "
                   "reset, QEMU (with -device i8042) exits through -no-reboot; the guest kernel "
                   "has no ACPI, so a poweroff would only halt the CPUs");
        json_field(f, "start",
                   "times count from just before posix_spawn of the VMM; the marker is the "
                   "guest's first userspace output line, read from the console pipe");
    }
    fprintf(f, ",\"failures\":{\"kiln\":%d", info->failures[KILN]);
    if (info->guest)
        fprintf(f, ",\"qemu\":%d", info->failures[QEMU]);
    fputs("},\"metrics\":{", f);
    for (int m = 0; m < NMETRIC; m++) {
        const struct metric *mt = &metrics[m];

        if (!shown(info, m))
            continue;
        fprintf(f, "%s\"%s\":{\"unit\":\"%s\"", first ? "" : ",", mt->key, mt->unit);
        first = 0;
        json_field(f, "target", mt->target);
        fputs(",\"kiln\":", f);
        json_series(f, &data[KILN][m], mt->scale);
        if (info->guest && mt->both) {
            struct summary k = bench_summarize(&data[KILN][m], 1);
            struct summary q = bench_summarize(&data[QEMU][m], 1);

            fputs(",\"qemu\":", f);
            json_series(f, &data[QEMU][m], mt->scale);
            fputs(",\"ratio_kiln_over_qemu\":", f);
            json_val(f, k.median / q.median);
        }
        fputc('}', f);
    }
    fputs("}}\n", f);
}
