/* host.c: the checks behind `kiln doctor`: KVM and its capabilities, devices, cgroups, user
 * namespaces and the CPU, then the probe, which alone decides whether Linux guests can run. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "doctor.h"
#include "lib/lib.h"

#define TESTBED_HINT "use the test bed (tests/testbed/run.sh; make check does this automatically)"

const char *doctor_state_name(enum doctor_state state)
{
    static const char *const names[] = {"ok", "info", "warning", "missing", "fail"};

    return (unsigned)state < ARRAY_SIZE(names) ? names[state] : "invalid";
}

static void add(struct doctor_report *rep, const char *name, enum doctor_state state, bool required,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(struct doctor_report *rep, const char *name, enum doctor_state state, bool required,
                const char *fmt, ...)
{
    struct doctor_check *c;
    va_list ap;

    assert(rep->nchecks < DOCTOR_MAX_CHECKS);
    c = &rep->checks[rep->nchecks++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->state = state;
    c->required = required;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
}

/* Reads root+path (a /proc or /sys file: their size is unknown) into buf, NUL-terminated and
 * truncated to len - 1 bytes, without the trailing newline. Returns the length or -errno. */
static int read_text(const char *root, const char *path, char *buf, size_t len)
{
    char full[512];
    size_t done = 0;
    int fd;

    snprintf(full, sizeof(full), "%s%s", root, path);
    fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    while (done < len - 1) {
        ssize_t n = read(fd, buf + done, len - 1 - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    close(fd);
    while (done > 0 && buf[done - 1] == '\n')
        done--;
    buf[done] = '\0';
    return (int)done;
}

static bool exists(const char *root, const char *path)
{
    char full[512];

    snprintf(full, sizeof(full), "%s%s", root, path);
    return access(full, F_OK) == 0;
}

static void check_kvm(struct doctor_report *rep)
{
    int fd, version, e;

    fd = open(rep->kvm_path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        snprintf(rep->kvm_problem, sizeof(rep->kvm_problem), "cannot open %.128s: %s%s",
                 rep->kvm_path, strerror(e),
                 e == ENOENT   ? " (is the kvm module loaded, and virtualization enabled?)"
                 : e == EACCES ? " (add yourself to the kvm group, or run as root)"
                               : "");
        add(rep, "kvm device", DOCTOR_MISSING, true, "%s", rep->kvm_problem);
        return;
    }
    version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        snprintf(rep->kvm_problem, sizeof(rep->kvm_problem),
                 "%.128s speaks KVM API version %d; kiln needs %d", rep->kvm_path, version,
                 KVM_API_VERSION);
        add(rep, "kvm device", DOCTOR_MISSING, true, "%s", rep->kvm_problem);
        close(fd);
        return;
    }
    add(rep, "kvm device", DOCTOR_OK, true, "%s, KVM API version %d", rep->kvm_path, version);
    rep->kvm_usable = true;
    for (unsigned i = 0; i < kvm_ncaps; i++) {
        char name[32];
        bool have = ioctl(fd, KVM_CHECK_EXTENSION, kvm_caps[i].cap) > 0;

        snprintf(name, sizeof(name), "KVM_CAP_%s", kvm_caps[i].name);
        if (have) {
            add(rep, name, DOCTOR_OK, kvm_caps[i].required, "%s",
                kvm_caps[i].required ? "required" : "optional");
        } else if (kvm_caps[i].required) {
            add(rep, name, DOCTOR_MISSING, true, "required: kiln cannot create VMs without it");
            if (rep->kvm_usable)
                snprintf(rep->kvm_problem, sizeof(rep->kvm_problem),
                         "%.128s lacks the capability %s, which kiln needs", rep->kvm_path, name);
            rep->kvm_usable = false;
        } else {
            add(rep, name, DOCTOR_WARNING, false, "optional: missing, kiln works without it");
        }
    }
    add(rep, "kvm limits", DOCTOR_INFO, false, "up to %d vCPUs per VM, %d memory slots",
        ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS),
        ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS));
    close(fd);
}

/* Which implementation is behind /dev/kvm, for information: the probe decides. */
static void check_implementation(struct doctor_report *rep, const char *root)
{
    if (exists(root, "/sys/module/kvm_pvm"))
        add(rep, "kvm module", DOCTOR_INFO, false,
            "kvm_pvm: PVM, KVM without SVM/VMX (guest ring 0 is emulated)");
    else if (exists(root, "/sys/module/kvm_amd"))
        add(rep, "kvm module", DOCTOR_INFO, false, "kvm_amd: AMD SVM hardware virtualization");
    else if (exists(root, "/sys/module/kvm_intel"))
        add(rep, "kvm module", DOCTOR_INFO, false, "kvm_intel: Intel VMX hardware virtualization");
    else
        add(rep, "kvm module", DOCTOR_INFO, false,
            "none of kvm_amd, kvm_intel, kvm_pvm is loaded (built in, or another implementation)");
}

static void check_device(struct doctor_report *rep, const char *root, const char *path,
                         const char *purpose)
{
    char full[512];
    struct stat st;

    snprintf(full, sizeof(full), "%s%s", root, path);
    if (stat(full, &st) < 0)
        add(rep, path, DOCTOR_MISSING, false, "absent: no %s", purpose);
    else if (!S_ISCHR(st.st_mode))
        add(rep, path, DOCTOR_WARNING, false, "not a character device: no %s", purpose);
    else if (access(full, R_OK | W_OK) < 0)
        add(rep, path, DOCTOR_WARNING, false, "present, but this user cannot open it: no %s",
            purpose);
    else
        add(rep, path, DOCTOR_OK, false, "%s", purpose);
}

static void check_cgroup(struct doctor_report *rep, const char *root)
{
    char ctl[160];

    if (read_text(root, "/sys/fs/cgroup/cgroup.controllers", ctl, sizeof(ctl)) >= 0)
        add(rep, "cgroup v2", DOCTOR_OK, false, "unified hierarchy; controllers: %s",
            ctl[0] ? ctl : "(none)");
    else if (read_text(root, "/sys/fs/cgroup/unified/cgroup.controllers", ctl, sizeof(ctl)) >= 0)
        add(rep, "cgroup v2", DOCTOR_WARNING, false,
            "hybrid hierarchy: v2 only at /sys/fs/cgroup/unified, controllers: %s",
            ctl[0] ? ctl : "(none)");
    else
        add(rep, "cgroup v2", DOCTOR_MISSING, false,
            "no /sys/fs/cgroup/cgroup.controllers (cgroup v1 or none): no per-VM cgroup limits");
}

static void check_userns(struct doctor_report *rep, const char *root)
{
    char clone[16], max[32];
    bool have_clone =
        read_text(root, "/proc/sys/kernel/unprivileged_userns_clone", clone, sizeof(clone)) > 0;
    bool have_max = read_text(root, "/proc/sys/user/max_user_namespaces", max, sizeof(max)) > 0;

    if (have_max && !strcmp(max, "0"))
        add(rep, "user namespaces", DOCTOR_MISSING, false,
            "disabled: user.max_user_namespaces is 0");
    else if (have_clone && !strcmp(clone, "0"))
        add(rep, "user namespaces", DOCTOR_WARNING, false,
            "root only: kernel.unprivileged_userns_clone is 0");
    else if (have_max)
        add(rep, "user namespaces", DOCTOR_OK, false, "unprivileged allowed (up to %s)", max);
    else
        add(rep, "user namespaces", DOCTOR_MISSING, false,
            "no /proc/sys/user/max_user_namespaces: the kernel lacks user namespaces");
}

/* Guest RAM is a memfd, so the shared-memory THP policy is the one that gives it 2 MiB pages. */
static void check_hugepages(struct doctor_report *rep, const char *root)
{
    char word[16];

    if (thp_shmem_policy(root, word, sizeof(word)) < 0)
        add(rep, "huge pages", DOCTOR_MISSING, false,
            "no /sys/kernel/mm/transparent_hugepage/shmem_enabled: guest RAM on 4 KiB pages");
    else if (thp_policy_grants_advised(word))
        add(rep, "huge pages", DOCTOR_OK, false, "shmem_enabled is '%s': guest RAM on 2 MiB pages",
            word);
    else
        add(rep, "huge pages", DOCTOR_WARNING, false,
            "shmem_enabled is '%s': guest RAM on 4 KiB pages, every first touch a fault; "
            "'echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled'",
            word);
}

/* The value of "key\t: value" in the first processor's block of cpuinfo, or "". */
static void cpuinfo_field(const char *info, const char *key, char *out, size_t len)
{
    size_t klen = strlen(key);

    out[0] = '\0';
    for (const char *line = info; line && *line && *line != '\n';) {
        const char *nl = strchr(line, '\n'), *colon = strchr(line, ':');

        if (!strncmp(line, key, klen) &&
            (line[klen] == '\t' || line[klen] == ' ' || line[klen] == ':') && colon &&
            (!nl || colon < nl)) {
            const char *v = colon + 1 + (colon[1] == ' ');
            size_t n = nl ? (size_t)(nl - v) : strlen(v);

            snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), v);
            return;
        }
        line = nl ? nl + 1 : NULL;
    }
}

static bool has_word(const char *list, const char *word)
{
    size_t wlen = strlen(word);

    for (const char *p = strstr(list, word); p; p = strstr(p + 1, word))
        if ((p == list || p[-1] == ' ') && (p[wlen] == ' ' || p[wlen] == '\0'))
            return true;
    return false;
}

static void check_cpu(struct doctor_report *rep, const char *root)
{
    static char info[65536];
    char vendor[32], model[96], flags[4096];
    const char *virt;

    if (read_text(root, "/proc/cpuinfo", info, sizeof(info)) < 0) {
        add(rep, "cpu", DOCTOR_INFO, false, "cannot read /proc/cpuinfo");
        return;
    }
    cpuinfo_field(info, "vendor_id", vendor, sizeof(vendor));
    cpuinfo_field(info, "model name", model, sizeof(model));
    cpuinfo_field(info, "flags", flags, sizeof(flags));
    virt = has_word(flags, "svm")   ? "svm flag (AMD-V)"
           : has_word(flags, "vmx") ? "vmx flag (Intel VT-x)"
                                    : "no svm or vmx flag";
    add(rep, "cpu", DOCTOR_INFO, false, "%s, %s; %s%s (information only: the probe decides)",
        vendor[0] ? vendor : "unknown vendor", model[0] ? model : "unknown model", virt,
        has_word(flags, "hypervisor") ? ", running under a hypervisor" : "");
}

static void check_probe(struct doctor_report *rep, unsigned timeout_ms)
{
    double ms;

    if (!rep->kvm_usable) {
        rep->exit_code = 1;
        add(rep, "probe", DOCTOR_MISSING, true, "not run: no usable KVM");
        return;
    }
    if (probe_run(rep->kvm_path, timeout_ms, &rep->probe) < 0) {
        rep->kvm_usable = false;
        rep->exit_code = 1;
        snprintf(rep->kvm_problem, sizeof(rep->kvm_problem), "%s", rep->probe.reason);
        add(rep, "probe", DOCTOR_FAIL, true, "could not run: %s", rep->probe.reason);
        return;
    }
    rep->probed = true;
    ms = (double)rep->probe.elapsed_ns / 1e6;
    if (rep->probe.status == PROBE_OK) {
        rep->exit_code = 0;
        add(rep, "probe", DOCTOR_OK, true, "%s in %.*f ms", rep->probe.reason, ms < 0.1 ? 2 : 1,
            ms);
    } else {
        rep->exit_code = 2;
        add(rep, "probe", DOCTOR_FAIL, true, "%s: %s", probe_status_name(rep->probe.status),
            rep->probe.reason);
    }
}

void doctor_collect(struct doctor_report *rep, const char *kvm_path, const char *root,
                    unsigned timeout_ms)
{
    memset(rep, 0, sizeof(*rep));
    snprintf(rep->kvm_path, sizeof(rep->kvm_path), "%s", kvm_path ? kvm_path : "/dev/kvm");
    check_kvm(rep);
    check_implementation(rep, root);
    check_device(rep, root, "/dev/net/tun", "TAP networking for virtio-net");
    check_device(rep, root, "/dev/vhost-vsock", "vhost-vsock (host <-> guest sockets)");
    check_device(rep, root, "/dev/vhost-net", "vhost-net (in-kernel virtio-net backend)");
    check_cgroup(rep, root);
    check_userns(rep, root);
    check_hugepages(rep, root);
    check_cpu(rep, root);
    check_probe(rep, timeout_ms);
}

void doctor_verdict(const struct doctor_report *rep, char *out, size_t len)
{
    double ms = (double)rep->probe.elapsed_ns / 1e6;

    if (rep->exit_code == 0)
        snprintf(out, len, "verdict: Linux guests can run here (probe: %s in %.*f ms)",
                 rep->probe.reason, ms < 0.1 ? 2 : 1, ms);
    else if (rep->exit_code == 2)
        snprintf(out, len, "verdict: %s cannot run Linux guests (probe: %s): " TESTBED_HINT,
                 rep->kvm_path, rep->probe.reason);
    else
        snprintf(out, len, "verdict: no usable KVM (%s): " TESTBED_HINT, rep->kvm_problem);
}
