/* test_uk_hvc.c: unikernel hypercall argument validation against a guest-memory arena: pointers
 * outside RAM, malformed structs and port accesses stop the guest with the documented codes;
 * good calls fill their OUT fields. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/lib.h"
#include "unikernel/uk.h"

#define MEM  (16 * MiB)
#define ARGS 0x200000ULL /* where the tests put argument structs */
#define BUF  0x300000ULL

struct fixture {
    struct guest_mem mem;
    struct uk_hvc h;
    int pipe[2];
};

static char *test_argv[] = {"app.elf", "one", "two words"};
static char *test_envp[] = {"A=1", "LONGER=value"};

static int setup(void **state)
{
    static struct fixture fx;

    memset(&fx, 0, sizeof(fx));
    if (guest_mem_init(&fx.mem, MEM, 3 * GiB) < 0 || pipe2(fx.pipe, O_NONBLOCK) < 0)
        return -1;
    fx.h = (struct uk_hvc){.mem = &fx.mem,
                           .argv = test_argv,
                           .argc = 3,
                           .envp = test_envp,
                           .envc = 2,
                           .out_fd = fx.pipe[1],
                           .err_fd = fx.pipe[1],
                           .in_fd = fx.pipe[0],
                           .exit_code = -1};
    uk_files_init(&fx.h.files, NULL);
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    guest_mem_destroy(&fx->mem);
    close(fx->pipe[0]);
    close(fx->pipe[1]);
    return 0;
}

static void *at(struct fixture *fx, uint64_t gpa, uint64_t len)
{
    void *p = guest_mem_ptr(&fx->mem, gpa, len);
    assert_non_null(p);
    return p;
}

/* Puts the struct at ARGS, calls, copies it back; returns the dispatch result. */
static int call(struct fixture *fx, unsigned nr, void *arg, size_t len)
{
    int ret;

    memcpy(at(fx, ARGS, len), arg, len);
    ret = uk_hvc_dispatch(&fx->h, nr, ARGS);
    memcpy(arg, at(fx, ARGS, len), len);
    return ret;
}

static void expect_stop(struct fixture *fx, int ret, int code)
{
    assert_int_equal(ret, 1);
    assert_int_equal(fx->h.exit_code, code);
    fx->h.exit_code = -1;
}

static void test_write_stdout(void **state)
{
    struct fixture *fx = *state;
    struct kiln_hvc_write a = {.fd = 1, .buf = BUF, .len = 5};
    char out[8] = "";

    memcpy(at(fx, BUF, 5), "hello", 5);
    assert_int_equal(call(fx, KILN_HVC_WRITE, &a, sizeof(a)), 0);
    assert_int_equal(a.ret, 5);
    assert_int_equal(read(fx->pipe[0], out, sizeof(out)), 5);
    assert_memory_equal(out, "hello", 5);
    /* wrong direction on the standard descriptors, unknown descriptors */
    a.fd = 0;
    assert_int_equal(call(fx, KILN_HVC_WRITE, &a, sizeof(a)), 0);
    assert_int_equal(a.ret, -EBADF);
    a.fd = 9;
    assert_int_equal(call(fx, KILN_HVC_WRITE, &a, sizeof(a)), 0);
    assert_int_equal(a.ret, -EBADF);
    struct kiln_hvc_read r = {.fd = 1, .buf = BUF, .len = 5};
    assert_int_equal(call(fx, KILN_HVC_READ, &r, sizeof(r)), 0);
    assert_int_equal(r.ret, -EBADF);
}

static void test_bad_pointers(void **state)
{
    struct fixture *fx = *state;
    struct kiln_hvc_write a = {.fd = 1, .buf = MEM - 4, .len = 8};
    struct kiln_hvc_open o = {.path = MEM - 1, .path_len = 2};
    struct kiln_hvc_cmdval v = {.argv = BUF, .argbuf = MEM, .envp = BUF, .envbuf = BUF};

    /* the argument struct itself */
    expect_stop(fx, uk_hvc_dispatch(&fx->h, KILN_HVC_WRITE, MEM), UK_EXIT_BAD_POINTER);
    expect_stop(fx, uk_hvc_dispatch(&fx->h, KILN_HVC_CLOCK, MEM - 8), UK_EXIT_BAD_POINTER);
    expect_stop(fx, uk_hvc_dispatch(&fx->h, KILN_HVC_EXIT, UINT64_MAX - 3), UK_EXIT_BAD_POINTER);
    /* buffers: past the end, wrapping */
    expect_stop(fx, call(fx, KILN_HVC_WRITE, &a, sizeof(a)), UK_EXIT_BAD_POINTER);
    a.buf = UINT64_MAX - 2;
    expect_stop(fx, call(fx, KILN_HVC_READ, &a, sizeof(a)), UK_EXIT_BAD_POINTER);
    expect_stop(fx, call(fx, KILN_HVC_OPEN, &o, sizeof(o)), UK_EXIT_BAD_POINTER);
    struct kiln_hvc_unlink u = {.path = MEM - 1, .path_len = 2};
    expect_stop(fx, call(fx, KILN_HVC_UNLINK, &u, sizeof(u)), UK_EXIT_BAD_POINTER);
    expect_stop(fx, call(fx, KILN_HVC_CMDVAL, &v, sizeof(v)), UK_EXIT_BAD_POINTER);
    v.argbuf = BUF + 0x1000;
    v.envp = MEM - 8; /* needs 3 * 8 bytes */
    expect_stop(fx, call(fx, KILN_HVC_CMDVAL, &v, sizeof(v)), UK_EXIT_BAD_POINTER);
}

static void test_malformed_calls(void **state)
{
    struct fixture *fx = *state;
    struct kiln_hvc_write w = {.fd = 1, .buf = BUF, .len = KILN_HVC_MAX_IO + 1ULL};
    struct kiln_hvc_lseek l = {.fd = 3, .pad = 7};
    struct kiln_hvc_exit e = {.code = KILN_HVC_EXIT_MAX + 1};
    struct kiln_hvc_open o = {.path = BUF, .path_len = 0};
    uint8_t data[4] = {0, 0, 0x20, 0};

    expect_stop(fx, call(fx, KILN_HVC_WRITE, &w, sizeof(w)), UK_EXIT_BAD_HYPERCALL);
    expect_stop(fx, call(fx, KILN_HVC_LSEEK, &l, sizeof(l)), UK_EXIT_BAD_HYPERCALL);
    expect_stop(fx, call(fx, KILN_HVC_EXIT, &e, sizeof(e)), UK_EXIT_BAD_HYPERCALL);
    expect_stop(fx, call(fx, KILN_HVC_OPEN, &o, sizeof(o)), UK_EXIT_BAD_HYPERCALL);
    o.path_len = KILN_HVC_MAX_PATH + 1;
    expect_stop(fx, call(fx, KILN_HVC_OPEN, &o, sizeof(o)), UK_EXIT_BAD_HYPERCALL);
    expect_stop(fx, uk_hvc_dispatch(&fx->h, 0, ARGS), UK_EXIT_BAD_HYPERCALL);
    expect_stop(fx, uk_hvc_dispatch(&fx->h, KILN_HVC_NCALLS, ARGS), UK_EXIT_BAD_HYPERCALL);
    expect_stop(fx, uk_hvc_dispatch(&fx->h, UINT32_MAX, ARGS), UK_EXIT_BAD_HYPERCALL);
    /* the port: only 32-bit writes */
    uk_hvc_io(&fx->h, KILN_HVC_CLOCK, data, 1, true);
    assert_int_equal(fx->h.exit_code, UK_EXIT_BAD_HYPERCALL);
    fx->h.exit_code = -1;
    uk_hvc_io(&fx->h, KILN_HVC_CLOCK, data, 4, false);
    assert_int_equal(fx->h.exit_code, UK_EXIT_BAD_HYPERCALL);
    fx->h.exit_code = -1;
    memcpy(data, (uint8_t[4]){0, 0, 0x20, 0}, 4);     /* the read filled it with 0xff */
    uk_hvc_io(&fx->h, KILN_HVC_CLOCK, data, 4, true); /* gpa 0x200000: a good clock call */
    assert_int_equal(fx->h.exit_code, -1);
}

static void test_exit_and_clock(void **state)
{
    struct fixture *fx = *state;
    struct kiln_hvc_exit e = {.code = 7};
    struct kiln_hvc_clock c = {0};

    assert_int_equal(call(fx, KILN_HVC_CLOCK, &c, sizeof(c)), 0);
    assert_true(c.realtime_ns > 0);
    expect_stop(fx, call(fx, KILN_HVC_EXIT, &e, sizeof(e)), 7);
    e.code = 0;
    expect_stop(fx, call(fx, KILN_HVC_EXIT, &e, sizeof(e)), 0);
}

static void test_cmdline(void **state)
{
    struct fixture *fx = *state;
    struct kiln_hvc_cmdsize s = {0};
    struct kiln_hvc_cmdval v = {
        .argv = BUF, .argbuf = BUF + 0x100, .envp = BUF + 0x200, .envbuf = BUF + 0x300};
    uint64_t *argv, *envp;

    assert_int_equal(call(fx, KILN_HVC_CMDSIZE, &s, sizeof(s)), 0);
    assert_int_equal(s.argc, 3);
    assert_int_equal(s.arg_bytes, 8 + 4 + 10);
    assert_int_equal(s.envc, 2);
    assert_int_equal(s.env_bytes, 4 + 13);
    assert_int_equal(call(fx, KILN_HVC_CMDVAL, &v, sizeof(v)), 0);
    assert_int_equal(v.ret, 0);
    argv = at(fx, BUF, 32);
    envp = at(fx, BUF + 0x200, 24);
    assert_string_equal(at(fx, argv[2], 10), "two words");
    assert_int_equal(argv[3], 0);
    assert_string_equal(at(fx, envp[1], 13), "LONGER=value");
    assert_int_equal(envp[2], 0);
}

static void test_files_without_mount(void **state)
{
    struct fixture *fx = *state;
    struct kiln_hvc_open o = {.path = BUF, .path_len = 9};
    struct kiln_hvc_unlink u = {.path = BUF, .path_len = 9};
    struct kiln_hvc_fstat st = {.fd = 1};
    struct kiln_hvc_close c = {.fd = 3};
    struct kiln_hvc_lseek l = {.fd = 1};

    memcpy(at(fx, BUF, 9), "hello.txt", 9);
    assert_int_equal(call(fx, KILN_HVC_OPEN, &o, sizeof(o)), 0);
    assert_int_equal(o.ret, -EACCES);
    assert_int_equal(call(fx, KILN_HVC_UNLINK, &u, sizeof(u)), 0);
    assert_int_equal(u.ret, -EACCES);
    assert_int_equal(call(fx, KILN_HVC_FSTAT, &st, sizeof(st)), 0);
    assert_int_equal(st.ret, 0);
    st.fd = 12;
    assert_int_equal(call(fx, KILN_HVC_FSTAT, &st, sizeof(st)), 0);
    assert_int_equal(st.ret, -EBADF);
    assert_int_equal(call(fx, KILN_HVC_CLOSE, &c, sizeof(c)), 0);
    assert_int_equal(c.ret, -EBADF);
    assert_int_equal(call(fx, KILN_HVC_LSEEK, &l, sizeof(l)), 0);
    assert_int_equal(l.ret, -ESPIPE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_stdout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_pointers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_and_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmdline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_without_mount, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
