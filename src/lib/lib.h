/* lib.h: logging, checked arithmetic and small parsers shared by every kiln subsystem. */
#ifndef KILN_LIB_H
#define KILN_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- logging (log.c) ----------------------------------------------------------------------
 * One logger for the whole process. Messages go to stderr (or the fd set by log_set_fd) as
 * "kiln: <level>: <subsystem>: <text>\n", written with a single write() so lines from several
 * threads never interleave. Callers start the text with their subsystem ("uart: ...").
 */
enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_fd(int fd);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Logs at most once per call site for the life of the process: for events a guest can repeat. */
#define log_once(level, ...)                                                                       \
    do {                                                                                           \
        static int log_once_done_;                                                                 \
        if (!__atomic_exchange_n(&log_once_done_, 1, __ATOMIC_RELAXED))                            \
            log_msg(level, __VA_ARGS__);                                                           \
    } while (0)

/* ---- checked arithmetic (util.c) ---------------------------------------------------------- */
/* Return true when the result overflowed; *out is only meaningful when false is returned. */
static inline bool ck_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_add_overflow(a, b, out);
}
static inline bool ck_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}
/* True when [base, base+len) lies inside [0, limit) without overflow. */
static inline bool range_within(uint64_t base, uint64_t len, uint64_t limit)
{
    uint64_t end;
    return !ck_add_u64(base, len, &end) && end <= limit;
}

#define ALIGN_UP(x, a)   (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a)-1))
#define ARRAY_SIZE(a)    (sizeof(a) / sizeof((a)[0]))
#define KiB              (1024ULL)
#define MiB              (1024ULL * KiB)
#define GiB              (1024ULL * MiB)

/* ---- parsers (util.c) ---------------------------------------------------------------------- */
/* Parses "512", "512K", "256M", "2G" (binary units, case-insensitive, optional "iB"/"B").
 * Returns 0, or -EINVAL for anything else (empty, trailing junk, overflow). */
int parse_size(const char *text, uint64_t *out);
/* Parses a decimal unsigned integer in [min, max]. Returns 0, -EINVAL or -ERANGE. */
int parse_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out);

/* ---- time (util.c) ------------------------------------------------------------------------- */
uint64_t time_now_ns(void); /* CLOCK_MONOTONIC */

/* ---- files (util.c) ------------------------------------------------------------------------ */
/* Reads a whole regular file into a malloc'd buffer (at most max_size bytes, else -EFBIG).
 * Returns 0 or -errno; *out must be freed by the caller. */
int file_read_all(const char *path, size_t max_size, uint8_t **out, size_t *out_len);
/* Maps a whole regular file read-only (MAP_PRIVATE): no copy, pages come from the page cache as
 * they are touched. Refuses files larger than max_size (-EFBIG), directories (-EISDIR) and
 * anything that is not a regular file (-EINVAL). An empty file maps to a non-NULL dummy with
 * *out_len 0. Returns 0 or -errno; release with file_unmap(). */
int file_map(const char *path, size_t max_size, const uint8_t **out, size_t *out_len);
void file_unmap(const uint8_t *map, size_t len);
/* The host's transparent huge page policy for shared memory (memfds such as guest RAM): the
 * selected word of /sys/kernel/mm/transparent_hugepage/shmem_enabled ("always within_size
 * [advise] never deny force") copied to word. thp_policy_select() is the pure parser: 0, or
 * -EINVAL when the text has no single bracketed word. thp_shmem_policy() reads the file under
 * root ("" for the live system): 0 or -errno (-ENOENT: a kernel without THP). */
int thp_policy_select(const char *text, char *word, size_t len);
int thp_shmem_policy(const char *root, char *word, size_t len);
/* Whether a policy word gives 2 MiB pages to a mapping advised with MADV_HUGEPAGE. */
bool thp_policy_grants_advised(const char *word);
/* Resident memory of this process in KiB from one read of /proc/self/status: kib[0] anonymous,
 * kib[1] file-backed, kib[2] shared (guest RAM is a memfd, so it is the shared part). Zeros when
 * unknown. */
void proc_rss_kib(uint64_t kib[3]);
/* write() until done, retrying on EINTR. Returns 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);

#endif
