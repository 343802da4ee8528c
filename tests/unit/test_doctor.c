/* test_doctor.c: the probe verdict cache and `kiln doctor`'s host checks on a fake /proc, /sys. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "doctor/doctor.h"
#include "lib/lib.h"

#define BOOT_ID "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

static char dir[64];

static void put_file(const char *rel, const char *text)
{
    char path[256], parent[256], *slash;
    int fd;

    snprintf(path, sizeof(path), "%s%s", dir, rel);
    /* Create the parents, one level at a time. */
    snprintf(parent, sizeof(parent), "%s", path);
    for (slash = strchr(parent + strlen(dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        mkdir(parent, 0755);
        *slash = '/';
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write_all(fd, text, strlen(text)), 0);
    close(fd);
}

static int make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/kiln-test-doctor-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void key_for(struct probe_cache_key *key)
{
    char path[128];

    put_file("/boot_id", BOOT_ID "\n");
    snprintf(path, sizeof(path), "%s/boot_id", dir);
    /* /dev/null: every test machine has this character device. */
    assert_int_equal(probe_cache_key("/dev/null", path, key), 0);
}

static void test_cache_key(void **state)
{
    struct probe_cache_key key;
    char path[128];

    (void)state;
    key_for(&key);
    assert_string_equal(key.boot_id, BOOT_ID);
    assert_int_equal(key.rdev, makedev(1, 3));

    snprintf(path, sizeof(path), "%s/boot_id", dir);
    assert_int_equal(probe_cache_key("/nonexistent/kvm", path, &key), -ENOENT);
    assert_int_equal(probe_cache_key(path, path, &key), -ENODEV); /* a regular file */
    assert_int_equal(probe_cache_key("/dev/null", "/nonexistent", &key), -ENOENT);
    put_file("/boot_id", "\n");
    assert_int_equal(probe_cache_key("/dev/null", path, &key), -EINVAL);
    put_file("/boot_id", "with space\n");
    assert_int_equal(probe_cache_key("/dev/null", path, &key), -EINVAL);
    put_file("/boot_id", "bad\x01id\n");
    assert_int_equal(probe_cache_key("/dev/null", path, &key), -EINVAL);
    put_file("/boot_id", "0123456789012345678901234567890123456789\n"); /* 40: one too long */
    assert_int_equal(probe_cache_key("/dev/null", path, &key), -EINVAL);
}

static void test_cache_path(void **state)
{
    char path[64];

    (void)state;
    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    assert_int_equal(probe_cache_path(path, sizeof(path)), 0);
    assert_string_equal(path, "/run/user/1000/kiln/kvm-probe");
    setenv("XDG_RUNTIME_DIR", "", 1);
    assert_int_equal(probe_cache_path(path, sizeof(path)), 0);
    assert_string_equal(path, "/run/kiln/kvm-probe");
    setenv("XDG_RUNTIME_DIR", "relative", 1);
    assert_int_equal(probe_cache_path(path, sizeof(path)), 0);
    assert_string_equal(path, "/run/kiln/kvm-probe");
    unsetenv("XDG_RUNTIME_DIR");
    assert_int_equal(probe_cache_path(path, sizeof(path)), 0);
    assert_string_equal(path, "/run/kiln/kvm-probe");
    assert_int_equal(probe_cache_path(path, 10), -ENAMETOOLONG);
}

static void test_cache_round_trip(void **state)
{
    struct probe_cache_key key, other;
    struct probe_result res = {.status = PROBE_FAULT, .elapsed_ns = 853000}, got;
    char path[128];

    (void)state;
    key_for(&key);
    snprintf(path, sizeof(path), "%s/kiln/kvm-probe", dir);
    assert_int_equal(probe_cache_load(path, &key, &got), -ENOENT);
    snprintf(res.reason, sizeof(res.reason), "page fault\nin ring 3"); /* one line once stored */
    assert_int_equal(probe_cache_store(path, &key, &res), 0);          /* creates <dir>/kiln */
    assert_int_equal(probe_cache_load(path, &key, &got), 0);
    assert_int_equal(got.status, PROBE_FAULT);
    assert_int_equal(got.elapsed_ns, 853000);
    assert_string_equal(got.reason, "page fault in ring 3");

    res.status = PROBE_OK; /* a second store replaces the first */
    assert_int_equal(probe_cache_store(path, &key, &res), 0);
    assert_int_equal(probe_cache_load(path, &key, &got), 0);
    assert_int_equal(got.status, PROBE_OK);

    other = key; /* another boot, or another device: probe again */
    other.boot_id[0] = 'x';
    assert_int_equal(probe_cache_load(path, &other, &got), -ESTALE);
    other = key;
    other.rdev++;
    assert_int_equal(probe_cache_load(path, &other, &got), -ESTALE);

    /* "The probe could not run" is not a verdict and is never cached. */
    res.status = PROBE_NO_KVM;
    assert_int_equal(probe_cache_store(path, &key, &res), -EINVAL);
    /* A directory that cannot be created: the store fails, nothing else happens. */
    assert_int_equal(probe_cache_store("/nonexistent/kiln/kvm-probe", &key, &res), -EINVAL);
    res.status = PROBE_OK;
    assert_int_equal(probe_cache_store("/nonexistent/kiln/kvm-probe", &key, &res), -ENOENT);
}

static void test_cache_rejects_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "garbage\n",
        "kiln-kvm-probe 1\nboot_id " BOOT_ID "\nrdev 103\nstatus ok\nelapsed_ns 5\n",
        "kiln-kvm-probe 1\nboot_id " BOOT_ID "\nrdev 103\nstatus bogus\nelapsed_ns 5\nreason x\n",
        "kiln-kvm-probe 1\nboot_id " BOOT_ID "\nrdev 103\nstatus no-kvm\nelapsed_ns 5\nreason x\n",
        "kiln-kvm-probe 1\nboot_id " BOOT_ID "\nrdev 10z\nstatus ok\nelapsed_ns 5\nreason x\n",
        "kiln-kvm-probe 1\nboot_id " BOOT_ID "\nrdev 103\nstatus ok\nelapsed_ns -5\nreason x\n",
        "kiln-kvm-probe 1\nboot_id " BOOT_ID
        "\nrdev 103\nstatus ok\nelapsed_ns 5\nreason x\nmore\n",
        "kiln-kvm-probe 1\nrdev 103\nboot_id " BOOT_ID "\nstatus ok\nelapsed_ns 5\nreason x\n",
        "kiln-kvm-probe 1\nboot_id " BOOT_ID "\nrdev 103\nstatus ok\nelapsed_ns 5\nreason x",
        "kiln-kvm-probe 1\nboot_id " BOOT_ID "\nrdev 103\nstatus ok\nelapsed_ns 5\nreason \x1b\n",
    };
    struct probe_cache_key key;
    struct probe_result got;
    char path[128], big[5000];

    (void)state;
    key_for(&key);
    snprintf(path, sizeof(path), "%s/cache", dir);
    put_file("/cache", "kiln-kvm-probe 1\nboot_id " BOOT_ID
                       "\nrdev 103\nstatus ok\nelapsed_ns 5\nreason x\n");
    assert_int_equal(probe_cache_load(path, &key, &got), 0); /* the well-formed original */
    assert_string_equal(got.reason, "x");
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        put_file("/cache", bad[i]);
        assert_int_equal(probe_cache_load(path, &key, &got), -EINVAL);
    }
    /* Another probe version: stale, not malformed. */
    put_file("/cache", "kiln-kvm-probe 2\nboot_id " BOOT_ID
                       "\nrdev 103\nstatus ok\nelapsed_ns 5\nreason x\n");
    assert_int_equal(probe_cache_load(path, &key, &got), -ESTALE);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    put_file("/cache", big);
    assert_int_equal(probe_cache_load(path, &key, &got), -EINVAL);
    assert_int_equal(probe_cache_load(dir, &key, &got), -EISDIR);
}

static const struct doctor_check *find(const struct doctor_report *rep, const char *name)
{
    for (unsigned i = 0; i < rep->nchecks; i++)
        if (!strcmp(rep->checks[i].name, name))
            return &rep->checks[i];
    fail_msg("no check named %s", name);
    return NULL;
}

static void test_host_checks_on_fake_tree(void **state)
{
    static struct doctor_report rep;
    const struct doctor_check *c;
    char verdict[1024];

    (void)state;
    put_file("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
    put_file("/proc/sys/user/max_user_namespaces", "63459\n");
    put_file("/proc/cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC "
                              "7B13\nflags\t\t: fpu svm lm hypervisor\n\nprocessor\t: 1\n");
    put_file("/sys/module/kvm_amd/x", "");
    put_file("/dev/net/tun", ""); /* a regular file is no device */
    put_file("/sys/kernel/mm/transparent_hugepage/shmem_enabled",
             "always within_size [advise] never deny force\n");
    doctor_collect(&rep, "/nonexistent/kvm", dir, 100);

    assert_int_equal(rep.exit_code, 1);
    assert_false(rep.kvm_usable);
    assert_false(rep.probed);
    c = find(&rep, "kvm device");
    assert_int_equal(c->state, DOCTOR_MISSING);
    assert_true(c->required);
    assert_non_null(strstr(c->detail, "cannot open /nonexistent/kvm: No such file"));
    assert_int_equal(find(&rep, "probe")->state, DOCTOR_MISSING);
    assert_string_equal(find(&rep, "kvm module")->detail,
                        "kvm_amd: AMD SVM hardware virtualization");
    assert_int_equal(find(&rep, "/dev/net/tun")->state, DOCTOR_WARNING);
    assert_int_equal(find(&rep, "/dev/vhost-vsock")->state, DOCTOR_MISSING);
    assert_false(find(&rep, "/dev/vhost-vsock")->required);
    c = find(&rep, "cgroup v2");
    assert_int_equal(c->state, DOCTOR_OK);
    assert_string_equal(c->detail, "unified hierarchy; controllers: cpu memory pids");
    c = find(&rep, "user namespaces");
    assert_int_equal(c->state, DOCTOR_OK);
    assert_string_equal(c->detail, "unprivileged allowed (up to 63459)");
    c = find(&rep, "huge pages");
    assert_int_equal(c->state, DOCTOR_OK);
    assert_string_equal(c->detail, "shmem_enabled is 'advise': guest RAM on 2 MiB pages");
    c = find(&rep, "cpu");
    assert_int_equal(c->state, DOCTOR_INFO);
    assert_string_equal(c->detail, "AuthenticAMD, AMD EPYC 7B13; svm flag (AMD-V), running under a "
                                   "hypervisor (information only: the probe decides)");
    doctor_verdict(&rep, verdict, sizeof(verdict));
    assert_non_null(strstr(verdict, "verdict: no usable KVM (cannot open /nonexistent/kvm"));
    assert_non_null(strstr(verdict, "tests/testbed/run.sh"));
}

static void test_host_checks_degraded(void **state)
{
    static struct doctor_report rep;
    char kvm[128];

    (void)state;
    /* A hybrid cgroup tree, user namespaces off, an unreadable cpuinfo, no kvm module. */
    put_file("/sys/fs/cgroup/unified/cgroup.controllers", "\n");
    put_file("/proc/sys/user/max_user_namespaces", "0\n");
    put_file("/kvm", ""); /* opens, but answers no KVM ioctl */
    snprintf(kvm, sizeof(kvm), "%s/kvm", dir);
    doctor_collect(&rep, kvm, dir, 100);
    assert_int_equal(rep.exit_code, 1);
    assert_non_null(strstr(rep.kvm_problem, "speaks KVM API version -1; kiln needs 12"));
    assert_int_equal(find(&rep, "cgroup v2")->state, DOCTOR_WARNING);
    assert_non_null(strstr(find(&rep, "cgroup v2")->detail, "controllers: (none)"));
    assert_int_equal(find(&rep, "user namespaces")->state, DOCTOR_MISSING);
    assert_string_equal(find(&rep, "cpu")->detail, "cannot read /proc/cpuinfo");
    assert_non_null(strstr(find(&rep, "kvm module")->detail, "none of kvm_amd"));
    assert_int_equal(find(&rep, "huge pages")->state, DOCTOR_MISSING);
    put_file("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "always [never] deny\n");

    put_file("/proc/sys/user/max_user_namespaces", "100\n");
    put_file("/proc/sys/kernel/unprivileged_userns_clone", "0\n");
    unlink(strcat(strcpy(kvm, dir), "/sys/fs/cgroup/unified/cgroup.controllers"));
    doctor_collect(&rep, "/nonexistent", dir, 100);
    assert_int_equal(find(&rep, "user namespaces")->state, DOCTOR_WARNING);
    assert_int_equal(find(&rep, "cgroup v2")->state, DOCTOR_MISSING);
    assert_int_equal(find(&rep, "huge pages")->state, DOCTOR_WARNING);
    assert_non_null(strstr(find(&rep, "huge pages")->detail, "'never': guest RAM on 4 KiB"));
}

static void test_verdict_lines(void **state)
{
    static struct doctor_report rep;
    char verdict[1024];

    (void)state;
    memset(&rep, 0, sizeof(rep));
    snprintf(rep.kvm_path, sizeof(rep.kvm_path), "/dev/kvm");
    rep.probed = true;
    rep.probe.status = PROBE_OK;
    rep.probe.elapsed_ns = 412000;
    snprintf(rep.probe.reason, sizeof(rep.probe.reason),
             "SYSCALL from ring 3 reached the "
             "supervisor handler");
    doctor_verdict(&rep, verdict, sizeof(verdict));
    assert_string_equal(verdict, "verdict: Linux guests can run here (probe: SYSCALL from ring 3 "
                                 "reached the supervisor handler in 0.4 ms)");
    rep.exit_code = 2;
    rep.probe.status = PROBE_FAULT;
    snprintf(rep.probe.reason, sizeof(rep.probe.reason), "page fault (#PF) in ring 3");
    doctor_verdict(&rep, verdict, sizeof(verdict));
    assert_string_equal(verdict, "verdict: /dev/kvm cannot run Linux guests (probe: page fault "
                                 "(#PF) in ring 3): use the test bed (tests/testbed/run.sh; make "
                                 "check does this automatically)");
    assert_string_equal(doctor_state_name(DOCTOR_FAIL), "fail");
    assert_string_equal(doctor_state_name((enum doctor_state)42), "invalid");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cache_key, make_dir, remove_dir),
        cmocka_unit_test(test_cache_path),
        cmocka_unit_test_setup_teardown(test_cache_round_trip, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_cache_rejects_malformed, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_host_checks_on_fake_tree, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_host_checks_degraded, make_dir, remove_dir),
        cmocka_unit_test(test_verdict_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
