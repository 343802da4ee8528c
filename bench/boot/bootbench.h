/* bootbench.h: what the boot benchmark's runner (bootbench.c) and its report (report.c) share. */
#ifndef KILN_BENCH_BOOTBENCH_H
#define KILN_BENCH_BOOTBENCH_H

#include <stdio.h>

#define BENCH_MAX_RUNS 1000

enum { KILN, QEMU, NVMM };

/* The figures taken per run; each one is a series of samples. */
enum { M_MARK, M_EXIT, M_SETUP, M_RSS, M_BOOTTIMER, M_MAXRSS, NMETRIC };

struct metric {
    const char *key, *label, *unit, *target;
    double scale; /* sample unit -> reported unit */
    int both;     /* measured for QEMU too, so a ratio exists */
    int host;     /* also measured in host mode */
};

struct series {
    double v[BENCH_MAX_RUNS];
    int n;
};

/* Median (mean of the two middle samples when n is even), p90 (nearest rank) and minimum. */
struct summary {
    double median, p90, min;
    int n;
};

/* What the report says about the run besides the figures. */
struct report_info {
    const char *mode, *place, *kernel, *mem, *cmdline;
    const char *qemu_command; /* NULL in host mode */
    int n;
    int guest;
    int failures[NVMM];
};

extern const char *const vmm_name[NVMM];
extern const struct metric metrics[NMETRIC];

/* Summarizes every sample of s (none discarded), scaled; NAN fields when s is empty. */
struct summary bench_summarize(const struct series *s, double scale);

/* The human table on stdout. */
void bench_print_table(const struct report_info *info, struct series data[NVMM][NMETRIC]);

/* One line of JSON: medians, p90, minima, ratios, targets and every sample. */
void bench_write_json(FILE *f, const struct report_info *info, struct series data[NVMM][NMETRIC]);

#endif
