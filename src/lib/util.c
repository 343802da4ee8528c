/* util.c: size and number parsers, the monotonic clock, whole-file I/O helpers and the host's
 * huge page policy. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib.h"

int parse_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!text || !isdigit((unsigned char)text[0]))
        return -EINVAL;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (*end != '\0')
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int parse_size(const char *text, uint64_t *out)
{
    char *end;
    unsigned long long v;
    uint64_t mult = 1;

    if (!text || !isdigit((unsigned char)text[0]))
        return -EINVAL;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno == ERANGE)
        return -EINVAL;
    switch (toupper((unsigned char)*end)) {
    case '\0':
        break;
    case 'K':
        mult = KiB;
        break;
    case 'M':
        mult = MiB;
        break;
    case 'G':
        mult = GiB;
        break;
    case 'T':
        mult = 1024 * GiB;
        break;
    default:
        return -EINVAL;
    }
    if (*end) {
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
    }
    if (*end != '\0')
        return -EINVAL;
    if (ck_mul_u64(v, mult, out))
        return -EINVAL;
    return 0;
}

uint64_t time_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int file_read_all(const char *path, size_t max_size, uint8_t **out, size_t *out_len)
{
    struct stat st;
    uint8_t *buf;
    size_t done = 0;
    int fd, ret;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        goto fail_close;
    }
    if (!S_ISREG(st.st_mode)) {
        ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        goto fail_close;
    }
    if ((uint64_t)st.st_size > max_size) {
        ret = -EFBIG;
        goto fail_close;
    }
    buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf) {
        ret = -ENOMEM;
        goto fail_close;
    }
    while (done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ret = n < 0 ? -errno : -EIO; /* the file shrank under us */
            free(buf);
            goto fail_close;
        }
        done += (size_t)n;
    }
    close(fd);
    *out = buf;
    *out_len = done;
    return 0;

fail_close:
    close(fd);
    return ret;
}

static const uint8_t empty_file_map[1];

int file_map(const char *path, size_t max_size, const uint8_t **out, size_t *out_len)
{
    struct stat st;
    void *map;
    int fd, ret = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        ret = -errno;
    } else if (!S_ISREG(st.st_mode)) {
        ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    } else if ((uint64_t)st.st_size > max_size) {
        ret = -EFBIG;
    } else if (st.st_size == 0) {
        *out = empty_file_map;
        *out_len = 0;
    } else {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            ret = -errno;
        } else {
            *out = map;
            *out_len = (size_t)st.st_size;
        }
    }
    close(fd);
    return ret;
}

void file_unmap(const uint8_t *map, size_t len)
{
    if (map && len)
        munmap((void *)map, len);
}

void proc_rss_kib(uint64_t kib[3])
{
    static const char *const keys[3] = {"RssAnon:", "RssFile:", "RssShmem:"};
    char line[256];
    FILE *f = fopen("/proc/self/status", "re");

    kib[0] = kib[1] = kib[2] = 0;
    if (!f)
        return;
    while (fgets(line, sizeof(line), f))
        for (unsigned k = 0; k < 3; k++)
            if (!strncmp(line, keys[k], strlen(keys[k])))
                kib[k] = strtoull(line + strlen(keys[k]), NULL, 10);
    fclose(f);
}

int thp_policy_select(const char *text, char *word, size_t len)
{
    const char *open = strchr(text, '['), *close = open ? strchr(open, ']') : NULL;

    if (!open || !close || close == open + 1 || strchr(close, '[') || len == 0)
        return -EINVAL;
    size_t n = (size_t)(close - open - 1);
    if (n >= len || memchr(open + 1, ' ', n))
        return -EINVAL;
    memcpy(word, open + 1, n);
    word[n] = '\0';
    return 0;
}

int thp_shmem_policy(const char *root, char *word, size_t len)
{
    char path[PATH_MAX], text[160];

    snprintf(path, sizeof(path), "%s/sys/kernel/mm/transparent_hugepage/shmem_enabled", root);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    int err = n < 0 ? -errno : 0;
    close(fd);
    if (err)
        return err;
    text[n] = '\0';
    return thp_policy_select(text, word, len);
}

bool thp_policy_grants_advised(const char *word)
{
    /* "within_size" counts: guest RAM's memfd is sized before it is mapped */
    return !strcmp(word, "always") || !strcmp(word, "within_size") || !strcmp(word, "advise") ||
           !strcmp(word, "force");
}
