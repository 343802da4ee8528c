/* kiln/fileservice.h: the read-only file service's wire ABI (version 1), shared by the VMM and
 * guest clients (kiln-fetch). docs/file-service.md is the specification: the port, the state
 * machine, every message's byte layout, the statuses and the limits. All fields are
 * little-endian; fields marked reserved must be zero. Grown only by appending message types and
 * statuses; existing layouts never change. */
#ifndef KILN_FILESERVICE_H
#define KILN_FILESERVICE_H

#include <stdint.h>

#define KILN_FS_VERSION 1     /* the one version this header describes */
#define KILN_FS_PORT    1026u /* host vsock port (the agent uses 1024 and 1025) */

/* Put on the kernel command line when the service runs: the default /init only looks then. */
#define KILN_FS_CMDLINE_HINT "kiln.files=1"

#define KILN_FS_MAX_READ 65536u /* largest byte_count of a ReadFile */
#define KILN_FS_MAX_PATH 4096u  /* longest path in bytes (no terminating NUL on the wire) */
#define KILN_FS_MAX_NAME 255u   /* longest path component */

/* Every message starts with this header. `size` counts the whole message (header, body and any
 * trailing path or data), because a vsock stream has no message boundaries of its own. */
struct kiln_fs_hdr {
    uint32_t size;     /* IN/OUT: bytes in this message, header included */
    uint16_t type;     /* IN/OUT: KILN_FS_MSG_* */
    uint16_t reserved; /* zero */
};

enum kiln_fs_msg_type {
    KILN_FS_MSG_VERSION_REQUEST = 1,        /* client -> service */
    KILN_FS_MSG_VERSION_RESPONSE = 2,       /* service -> client */
    KILN_FS_MSG_GET_FILE_INFO = 3,          /* client -> service */
    KILN_FS_MSG_GET_FILE_INFO_RESPONSE = 4, /* service -> client */
    KILN_FS_MSG_READ_FILE = 5,              /* client -> service */
    KILN_FS_MSG_READ_FILE_RESPONSE = 6,     /* service -> client */
};

/* VersionResponse statuses. */
enum kiln_fs_version_status {
    KILN_FS_VERSION_SUPPORTED = 0,   /* the connection is ready */
    KILN_FS_VERSION_UNSUPPORTED = 1, /* still waiting for a VersionRequest */
};

/* GetFileInfo and ReadFile statuses. */
enum kiln_fs_status {
    KILN_FS_SUCCESS = 0,
    KILN_FS_NOT_FOUND = 1,      /* no such file or directory */
    KILN_FS_NOT_A_FILE = 2,     /* ReadFile of a directory; anything but a file or a directory */
    KILN_FS_INVALID_PATH = 3,   /* NUL, bad UTF-8, `..`, too long, escapes the root */
    KILN_FS_READ_PAST_END = 4,  /* ReadFile offset beyond the end of the file */
    KILN_FS_IO_ERROR = 5,       /* the host could not read it */
    KILN_FS_READ_TOO_LARGE = 6, /* ReadFile byte_count above KILN_FS_MAX_READ */
};

#define KILN_FS_FLAG_DIRECTORY 0x1u /* GetFileInfoResponse flags */

struct kiln_fs_version_request {
    struct kiln_fs_hdr hdr; /* size 16 */
    uint32_t version;       /* IN: KILN_FS_VERSION */
    uint32_t reserved;      /* IN: zero */
};

struct kiln_fs_version_response {
    struct kiln_fs_hdr hdr; /* size 16 */
    uint32_t status;        /* OUT: KILN_FS_VERSION_* */
    uint32_t reserved;      /* OUT: zero */
};

/* Followed by the path: size - 8 bytes, UTF-8, no NUL; "" or "/" is the root. */
struct kiln_fs_get_file_info {
    struct kiln_fs_hdr hdr; /* size 8 + path length */
};

struct kiln_fs_get_file_info_response {
    struct kiln_fs_hdr hdr; /* size 24 */
    uint32_t status;        /* OUT: KILN_FS_* */
    uint32_t flags;         /* OUT: KILN_FS_FLAG_* (SUCCESS only) */
    uint64_t file_size;     /* OUT: bytes (SUCCESS only; 0 for a directory) */
};

/* Followed by the path: size - 24 bytes. */
struct kiln_fs_read_file {
    struct kiln_fs_hdr hdr; /* size 24 + path length */
    uint32_t byte_count;    /* IN: at most KILN_FS_MAX_READ */
    uint32_t reserved;      /* IN: zero */
    uint64_t offset;        /* IN: byte offset in the file */
};

/* Followed by byte_count bytes of data (SUCCESS only; fewer than asked at the end of the
 * file, 0 at offset == file size). */
struct kiln_fs_read_file_response {
    struct kiln_fs_hdr hdr; /* size 16 + byte_count */
    uint32_t status;        /* OUT: KILN_FS_* */
    uint32_t byte_count;    /* OUT: data bytes that follow */
};

_Static_assert(sizeof(struct kiln_fs_hdr) == 8, "header is 8 bytes");
_Static_assert(sizeof(struct kiln_fs_version_request) == 16, "VersionRequest is 16 bytes");
_Static_assert(sizeof(struct kiln_fs_version_response) == 16, "VersionResponse is 16 bytes");
_Static_assert(sizeof(struct kiln_fs_get_file_info) == 8, "GetFileInfo is 8 bytes + path");
_Static_assert(sizeof(struct kiln_fs_get_file_info_response) == 24, "GetFileInfoResponse is 24");
_Static_assert(sizeof(struct kiln_fs_read_file) == 24, "ReadFile is 24 bytes + path");
_Static_assert(sizeof(struct kiln_fs_read_file_response) == 16, "ReadFileResponse is 16 + data");

/* The largest message either side ever has to buffer. */
#define KILN_FS_MAX_REQUEST  (24u + KILN_FS_MAX_PATH)
#define KILN_FS_MAX_RESPONSE (16u + KILN_FS_MAX_READ)

#endif
