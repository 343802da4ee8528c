/* conn.h: what conn.c (the connection and its reader thread) and req.c (requests) share: the
 * two structures, guarded by agent_conn.lock. The contract for everyone else is sandbox.h. */
#ifndef KILN_SANDBOX_CONN_H
#define KILN_SANDBOX_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sandbox.h"

struct agent_req {
    struct agent_conn *c;
    struct agent_req *next; /* c->reqs */
    uint32_t id;
    pthread_cond_t cond;
    struct agent_msg *head, *tail;
    size_t queued;                       /* bytes of credit-less frames queued */
    uint32_t recv_credit[AGENT_STREAMS]; /* what the agent may still send per stream */
    uint32_t consumed[AGENT_STREAMS];    /* released since our last WINDOW */
    bool recv_end[AGENT_STREAMS];        /* the agent ended that stream */
    uint64_t send_credit[AGENT_STREAMS]; /* what we may still send per stream */
    bool cancelled;                      /* writers give up: the request is over */
    bool answered;                       /* ERROR, EXIT or OK arrived: writers give up */
};

struct agent_conn {
    int fd;
    pthread_t reader;
    pthread_mutex_t lock;  /* the request list, every request's state, dead/msg */
    pthread_mutex_t wlock; /* one frame at a time on the socket */
    pthread_mutex_t ping_lock;
    struct agent_req *reqs;
    struct agent_req *ping; /* the PING in flight (id 0), or NULL */
    uint32_t next_id;
    uint32_t max_payload;
    int dead; /* 0, or the -errno every waiter gets */
    char msg[AGENT_ERR_MAX];
};

/* Stream index (0 STDIN, 1 STDOUT, 2 STDERR, 3 FILE_DATA) of a data frame type or a WINDOW's
 * stream field; -1 for anything else. */
int conn_stream_index(uint32_t type);
/* Writes one frame (header, then a and b) whole; a failure fails the connection. Returns 0 or the
 * connection's -errno. */
int conn_send_frame(struct agent_conn *c, uint16_t type, uint16_t flags, uint32_t id, const void *a,
                    size_t alen, const void *b, size_t blen);

#endif
