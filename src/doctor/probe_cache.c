/* probe_cache.c: keeps the probe's verdict per boot and KVM device, so `kiln run` stays cheap. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "doctor.h"
#include "lib/lib.h"

/* Bump when the probe guest or its classification changes: old verdicts then count as stale. */
#define CACHE_MAGIC     "kiln-kvm-probe 1"
#define CACHE_MAX_BYTES 4096
#define BOOT_ID_PATH    "/proc/sys/kernel/random/boot_id"

static bool printable(const char *s)
{
    for (; *s; s++)
        if (!isprint((unsigned char)*s))
            return false;
    return true;
}

int probe_cache_key(const char *kvm_path, const char *boot_id_path, struct probe_cache_key *key)
{
    struct stat st;
    char buf[64];
    ssize_t n;
    int fd;

    memset(key, 0, sizeof(*key));
    if (stat(kvm_path ? kvm_path : "/dev/kvm", &st) < 0)
        return -errno;
    if (!S_ISCHR(st.st_mode))
        return -ENODEV;
    key->rdev = (uint64_t)st.st_rdev;

    /* /proc files report size 0, so no file_read_all() here. */
    fd = open(boot_id_path ? boot_id_path : BOOT_ID_PATH, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    do
        n = read(fd, buf, sizeof(buf) - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (!buf[0] || strlen(buf) >= sizeof(key->boot_id) || strchr(buf, ' ') || !printable(buf))
        return -EINVAL;
    memcpy(key->boot_id, buf, strlen(buf) + 1);
    return 0;
}

int probe_cache_path(char *out, size_t len)
{
    const char *dir = getenv("XDG_RUNTIME_DIR");
    int n;

    if (!dir || dir[0] != '/')
        dir = "/run";
    n = snprintf(out, len, "%s/kiln/kvm-probe", dir);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Returns the value of line `name` ("name value\n") at *pos and moves *pos past it, or NULL. */
static char *field(char **pos, const char *name)
{
    char *line = *pos, *nl = strchr(line, '\n');
    size_t nlen = strlen(name);

    if (!nl)
        return NULL;
    *nl = '\0';
    *pos = nl + 1;
    if (strncmp(line, name, nlen) != 0 || line[nlen] != ' ')
        return NULL;
    return line + nlen + 1;
}

static int parse_cache(char *text, const struct probe_cache_key *key, struct probe_result *out)
{
    char *pos = text, *nl, *boot_id, *rdev, *status, *elapsed, *reason, *end;
    unsigned long long rdev_v, elapsed_v;

    nl = strchr(pos, '\n');
    if (!nl)
        return -EINVAL;
    *nl = '\0';
    if (strcmp(pos, CACHE_MAGIC) != 0)
        return strncmp(pos, "kiln-kvm-probe ", 15) == 0 ? -ESTALE : -EINVAL;
    pos = nl + 1;
    if (!(boot_id = field(&pos, "boot_id")) || !(rdev = field(&pos, "rdev")) ||
        !(status = field(&pos, "status")) || !(elapsed = field(&pos, "elapsed_ns")) ||
        !(reason = field(&pos, "reason")) || *pos != '\0')
        return -EINVAL;

    errno = 0;
    rdev_v = strtoull(rdev, &end, 16);
    if (errno || end == rdev || *end)
        return -EINVAL;
    errno = 0;
    elapsed_v = strtoull(elapsed, &end, 10);
    if (errno || end == elapsed || *end || !isdigit((unsigned char)elapsed[0]))
        return -EINVAL;
    if (probe_status_parse(status, &out->status) < 0 || out->status == PROBE_NO_KVM)
        return -EINVAL;
    if (strlen(reason) >= sizeof(out->reason) || !printable(reason))
        return -EINVAL;
    if (strcmp(boot_id, key->boot_id) != 0 || rdev_v != key->rdev)
        return -ESTALE;
    out->elapsed_ns = elapsed_v;
    memcpy(out->reason, reason, strlen(reason) + 1);
    return 0;
}

int probe_cache_load(const char *path, const struct probe_cache_key *key, struct probe_result *out)
{
    struct probe_result res = {0};
    uint8_t *buf;
    size_t len;
    int ret;

    ret = file_read_all(path, CACHE_MAX_BYTES, &buf, &len);
    if (ret == -EFBIG)
        return -EINVAL;
    if (ret < 0)
        return ret;
    /* The text must be NUL-free to be parsed as a string: a NUL inside is corruption. */
    if (memchr(buf, '\0', len)) {
        free(buf);
        return -EINVAL;
    }
    {
        char *text = realloc(buf, len + 1);

        if (!text) {
            free(buf);
            return -ENOMEM;
        }
        text[len] = '\0';
        ret = parse_cache(text, key, &res);
        free(text);
    }
    if (ret == 0)
        *out = res;
    return ret;
}

static int make_parent_dir(const char *path)
{
    char dir[4096];
    char *slash;

    if (strlen(path) >= sizeof(dir))
        return -ENAMETOOLONG;
    memcpy(dir, path, strlen(path) + 1);
    slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int probe_cache_store(const char *path, const struct probe_cache_key *key,
                      const struct probe_result *res)
{
    char tmp[4096], reason[PROBE_REASON_MAX], text[CACHE_MAX_BYTES];
    int fd, n, ret;

    if ((unsigned)res->status >= PROBE_NO_KVM)
        return -EINVAL;
    /* The reason is one line of printable text, whatever the classifier wrote. */
    snprintf(reason, sizeof(reason), "%s", res->reason);
    for (char *c = reason; *c; c++)
        if (!isprint((unsigned char)*c))
            *c = ' ';
    n = snprintf(text, sizeof(text),
                 "%s\nboot_id %s\nrdev %" PRIx64 "\nstatus %s\nelapsed_ns %" PRIu64 "\nreason %s\n",
                 CACHE_MAGIC, key->boot_id, key->rdev, probe_status_name(res->status),
                 res->elapsed_ns, reason);
    if (n < 0 || (size_t)n >= sizeof(text))
        return -EOVERFLOW;
    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    ret = make_parent_dir(path);
    if (ret < 0)
        return ret;
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ret = write_all(fd, text, (size_t)n);
    if (ret == 0 && fchmod(fd, 0644) < 0)
        ret = -errno;
    if (close(fd) < 0 && ret == 0)
        ret = -errno;
    /* rename() replaces the old file in one step: readers see the old verdict or the new one. */
    if (ret == 0 && rename(tmp, path) < 0)
        ret = -errno;
    if (ret < 0)
        unlink(tmp);
    return ret;
}
