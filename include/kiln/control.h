/* kiln/control.h: the VM control protocol's wire ABI (version 1), shared by the VMM and clients.
 * Every message is one SOCK_SEQPACKET datagram of exactly 24 little-endian bytes, plus at most one
 * file descriptor passed with SCM_RIGHTS. docs/control-protocol.md is the specification: field
 * meanings per type, the errno of every refusal, and the rules for growing this header (append
 * type numbers; never change the layout). */
#ifndef KILN_CONTROL_H
#define KILN_CONTROL_H

#include <stdint.h>

#define KILN_CTL_VERSION  1
#define KILN_CTL_MSG_SIZE 24
#define KILN_CTL_SOCKET   "control.sock" /* its name inside the VM's runtime directory */

/* A request (client -> VMM). Fields a type does not use must be zero. */
struct kiln_ctl_request {
    uint32_t type;      /* IN: KILN_CTL_REQ_* */
    uint32_t slot;      /* IN: UnregisterMemory: slot; RegisterIoevent: access length;
                         *     RegisterIrqfd: GSI */
    uint64_t size;      /* IN: RegisterMemory: bytes; RegisterIoevent: MMIO address */
    uint32_t num_pages; /* IN: BalloonAdjust: pages (signed, two's complement);
                         *     RegisterIoevent: datamatch */
    uint32_t padding;   /* IN: zero */
};

/* A response (VMM -> client): exactly one per request, in order. */
struct kiln_ctl_response {
    uint32_t type;    /* OUT: KILN_CTL_RESP_* */
    uint32_t err;     /* OUT: Err: a positive errno (the wire name of this field is "errno") */
    uint64_t pfn;     /* OUT: RegisterMemory: page frame number; Metrics: document bytes;
                       *      Ok to BalloonAdjust: the new target in pages */
    uint32_t slot;    /* OUT: RegisterMemory: slot; State: KILN_CTL_STATE_* */
    uint32_t padding; /* OUT: zero */
};

_Static_assert(sizeof(struct kiln_ctl_request) == KILN_CTL_MSG_SIZE, "request is 24 bytes");
_Static_assert(sizeof(struct kiln_ctl_response) == KILN_CTL_MSG_SIZE, "response is 24 bytes");

/* Request types. 1-4 are the inherited protocol; later numbers are appended, never reused. */
enum kiln_ctl_request_type {
    KILN_CTL_REQ_EXIT = 1,              /* -> Ok; then the VMM ends (exit code 0) */
    KILN_CTL_REQ_REGISTER_MEMORY = 2,   /* fd: memory to map, `size` bytes -> RegisterMemory */
    KILN_CTL_REQ_UNREGISTER_MEMORY = 3, /* `slot` -> Ok */
    KILN_CTL_REQ_BALLOON_ADJUST = 4,    /* `num_pages` (signed) -> Ok (pfn = new target) */
    KILN_CTL_REQ_PAUSE = 5,             /* -> Ok once every vCPU is held */
    KILN_CTL_REQ_RESUME = 6,            /* -> Ok once every vCPU may run again */
    KILN_CTL_REQ_GET_STATE = 7,         /* -> State */
    KILN_CTL_REQ_REGISTER_IOEVENT = 8,  /* fd: eventfd; size=addr, slot=len, num_pages=data -> Ok */
    KILN_CTL_REQ_REGISTER_IRQFD = 9,    /* fd: eventfd; slot=GSI -> Ok */
    KILN_CTL_REQ_GET_METRICS = 10,      /* -> Metrics with a memfd holding a JSON document */
    /* 16..31 are reserved for snapshot requests. */
    KILN_CTL_REQ_MAX = 10,
};

enum kiln_ctl_response_type {
    KILN_CTL_RESP_OK = 1,
    KILN_CTL_RESP_ERR = 2,
    KILN_CTL_RESP_REGISTER_MEMORY = 3,
    KILN_CTL_RESP_STATE = 4,   /* slot = KILN_CTL_STATE_* */
    KILN_CTL_RESP_METRICS = 5, /* fd: a sealed memfd; pfn = its length in bytes */
    KILN_CTL_RESP_MAX = 5,
};

enum kiln_ctl_state {
    KILN_CTL_STATE_RUNNING = 1,
    KILN_CTL_STATE_PAUSED = 2,
    KILN_CTL_STATE_EXITING = 3,
};

#endif
