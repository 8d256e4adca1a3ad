/*
 * stateroom bench load generator: a single-threaded epoll WebSocket client.
 *
 * One generator serves every server in the comparison, so it must never be the
 * bottleneck: frames are prebuilt once (the payload is constant, masked with one
 * random key), sends are batched with writev, responses are parsed in place and
 * checked byte for byte against "[Durable Object]: " + payload.
 *
 * Modes
 *   echo     N connections, D messages in flight on each; a finished echo is
 *            replaced at once by a new send. Warm-up, then a measured window.
 *   connect  P concurrent slots; each loops: TCP connect, WebSocket handshake,
 *            one echo, close handshake (client sends close, waits for the
 *            server's close frame and its TCP close). Counts completed cycles.
 *   hold     opens N connections (P handshakes at a time), one echo each, then
 *            prints READY and keeps them open and idle until stdin closes or
 *            --hold-seconds pass.
 *   alternate  one connection to each of --ports, one message in flight in all:
 *            --block echoes on one, then the next. Every server sees the same
 *            stretch of machine noise, so their latencies can be compared
 *            on a VM whose noise drifts between runs. Percentiles per port.
 *
 * Output on stdout, one line each, flushed at once:
 *   START <ns>            measured window begins (echo, connect)
 *   END <ns>              measured window ends
 *   READY <open> <failed> (hold)
 *   RESULT {json}         figures; always the last line
 * Errors go to stderr; exit status 0 on success, 2 on a failed run.
 *
 * Only for loopback benchmarking: the host must be 127.0.0.1 or ::1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PREFIX "[Durable Object]: "
#define PREFIX_LEN 18
#define RBUF_SIZE (256 * 1024)
#define MAX_IOV 64
#define HS_MAX 4096
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define HANDSHAKE_TIMEOUT_NS (10ull * 1000000000ull)
#define CLOSE_WAIT_NS (1ull * 1000000000ull)
#define STDIN_TAG UINT64_MAX
#define MAX_PORTS 16

enum mode { M_ECHO, M_CONNECT, M_HOLD, M_ALTERNATE };
enum cstate { S_FREE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSING, S_WAIT_EOF };

typedef struct {
    int fd;
    int state;
    int epout; /* EPOLLOUT registered */
    /* handshake response */
    char *hs;
    int hs_len;
    /* frame parser */
    uint8_t hdr[14];
    int hdr_len;
    int hdr_need;
    uint64_t payload_left;
    uint8_t opcode;     /* opcode of the frame being read */
    uint8_t fin;        /* FIN bit of the frame being read */
    uint8_t in_message; /* inside a fragmented data message */
    uint64_t msg_off;   /* bytes of the current data message seen */
    uint8_t ctrl[125];
    int ctrl_len;
    /* output */
    uint64_t frames_pending;
    size_t frame_off;
    uint8_t ctl_out[256];
    int ctl_out_len;
    int ctl_close_after; /* close frame queued */
    /* send timestamps of messages in flight (ring) */
    uint64_t *ts;
    int ts_head;
    int ts_count;
    int ts_cap;
    uint64_t started_ns; /* connect mode: cycle start; handshake deadline */
    uint64_t deadline_ns;
    int echoed; /* hold/connect: the one echo came back */
    int target; /* index into --ports (alternate); 0 otherwise */
} conn_t;

/* ---- options ------------------------------------------------------------ */
static enum mode g_mode = M_ECHO;
static const char *g_host = "127.0.0.1";
static int g_ports[MAX_PORTS];
static int g_nports = 0;
static int g_block = 1000;
static const char *g_path = "/";
static int g_conns = 100;
static int g_inflight = 1;
static size_t g_size = 32;
static double g_warmup = 1.0;
static double g_duration = 5.0;
static int g_open_conc = 64;
static double g_hold_seconds = 60.0;
static double g_setup_seconds = 60.0;

/* ---- state -------------------------------------------------------------- */
static int g_ep = -1;
static conn_t *g_c = NULL;
static int g_nslots = 0;
static uint8_t *g_frame = NULL; /* one prebuilt masked text frame */
static size_t g_frame_len = 0;
static uint8_t *g_expect = NULL; /* expected echo: prefix + payload */
static size_t g_expect_len = 0;
static uint8_t g_mask[4];
static char g_request[MAX_PORTS][1024];
static int g_request_len[MAX_PORTS];
static struct sockaddr_storage g_addr[MAX_PORTS];
static socklen_t g_addr_len = 0;
static uint8_t g_rbuf[RBUF_SIZE];
static int g_sending = 1;
/* hard caps, besides the time limits: every run is bounded in count too */
#define MAX_MESSAGES 500000000ull
#define MAX_CONNECTS 20000000ull
static uint64_t g_sent_total = 0, g_connects_total = 0;

/* counters (reset at window start) */
static uint64_t n_msgs = 0, n_bytes = 0, n_errors = 0, n_cycles = 0, n_close_timeouts = 0;
static int g_measuring = 0;
static int g_open_count = 0, g_failed = 0, g_active = 0;
static char g_first_error[256] = "";

/* latency histogram, log-linear in ns: 64 sub-buckets per power of two */
#define HBUCKETS 4096
typedef struct {
    uint64_t bucket[HBUCKETS];
    uint64_t count, max;
    double sum;
} hist_t;
static hist_t g_lat;             /* every sample */
static hist_t g_tlat[MAX_PORTS]; /* alternate: per port */
static int g_block_done = 0;     /* alternate: echoes on the current connection */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void note_error(const char *fmt, ...) {
    n_errors++;
    if (g_first_error[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_first_error, sizeof g_first_error, fmt, ap);
        va_end(ap);
    }
}

static int hist_index(uint64_t v) {
    if (v < 128) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6; /* v >> shift in [64, 127] */
    int idx = 128 + (shift - 1) * 64 + (int)((v >> shift) - 64);
    return idx < HBUCKETS ? idx : HBUCKETS - 1;
}

static uint64_t hist_value(int idx) { /* middle of the bucket */
    if (idx < 128) return (uint64_t)idx;
    int shift = (idx - 128) / 64 + 1;
    uint64_t base = (uint64_t)((idx - 128) % 64 + 64) << shift;
    return base + ((1ull << shift) >> 1);
}

static void hist_add(hist_t *h, uint64_t ns) {
    h->bucket[hist_index(ns)]++;
    h->count++;
    h->sum += (double)ns;
    if (ns > h->max) h->max = ns;
}

static void record_latency(uint64_t ns) {
    if (g_measuring) hist_add(&g_lat, ns);
}

static uint64_t hist_pct(const hist_t *h, double p) {
    if (h->count == 0) return 0;
    uint64_t target = (uint64_t)(p * (double)h->count);
    if (target >= h->count) target = h->count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < HBUCKETS; i++) {
        seen += h->bucket[i];
        if (seen > target) return hist_value(i);
    }
    return h->max;
}

/* "count": ..., "mean": ..., "p50": ... "max": ... of one histogram, into buf */
static int hist_json(char *buf, size_t cap, const hist_t *h) {
    return snprintf(buf, cap,
                    "\"count\": %llu, \"mean\": %.0f, \"p50\": %llu, \"p90\": %llu, "
                    "\"p99\": %llu, \"p999\": %llu, \"max\": %llu",
                    (unsigned long long)h->count, h->count ? h->sum / (double)h->count : 0,
                    (unsigned long long)hist_pct(h, 0.50), (unsigned long long)hist_pct(h, 0.90),
                    (unsigned long long)hist_pct(h, 0.99), (unsigned long long)hist_pct(h, 0.999),
                    (unsigned long long)h->max);
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void emit(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* ---- frames ------------------------------------------------------------- */
static size_t build_frame(uint8_t *out, uint8_t opcode, const uint8_t *payload, size_t len) {
    size_t h = 0;
    out[h++] = 0x80 | opcode;
    if (len < 126) {
        out[h++] = 0x80 | (uint8_t)len;
    } else if (len < 65536) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) out[h++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(out + h, g_mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) out[h + i] = payload[i] ^ g_mask[i & 3];
    return h + len;
}

static void prepare(void) {
    if (getrandom(g_mask, 4, 0) != 4) die("getrandom failed");
    uint8_t *payload = malloc(g_size);
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (size_t i = 0; i < g_size; i++) payload[i] = (uint8_t)alphabet[i % (sizeof alphabet - 1)];
    g_frame = malloc(g_size + 14);
    g_frame_len = build_frame(g_frame, 0x1, payload, g_size);
    g_expect_len = PREFIX_LEN + g_size;
    g_expect = malloc(g_expect_len);
    memcpy(g_expect, PREFIX, PREFIX_LEN);
    memcpy(g_expect + PREFIX_LEN, payload, g_size);
    free(payload);

    int is6 = strchr(g_host, ':') != NULL;
    for (int t = 0; t < g_nports; t++) {
        char hostport[128];
        if (is6)
            snprintf(hostport, sizeof hostport, "[%s]:%d", g_host, g_ports[t]);
        else
            snprintf(hostport, sizeof hostport, "%s:%d", g_host, g_ports[t]);
        g_request_len[t] = snprintf(g_request[t], sizeof g_request[t],
                                    "GET %s HTTP/1.1\r\n"
                                    "Host: %s\r\n"
                                    "Upgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n"
                                    "Sec-WebSocket-Key: " WS_KEY "\r\n"
                                    "Sec-WebSocket-Version: 13\r\n"
                                    "\r\n",
                                    g_path, hostport);

        memset(&g_addr[t], 0, sizeof g_addr[t]);
        if (is6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&g_addr[t];
            a->sin6_family = AF_INET6;
            a->sin6_port = htons((uint16_t)g_ports[t]);
            if (inet_pton(AF_INET6, g_host, &a->sin6_addr) != 1) die("bad host %s", g_host);
            if (!IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) die("host must be loopback");
            g_addr_len = sizeof *a;
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&g_addr[t];
            a->sin_family = AF_INET;
            a->sin_port = htons((uint16_t)g_ports[t]);
            if (inet_pton(AF_INET, g_host, &a->sin_addr) != 1) die("bad host %s", g_host);
            if ((ntohl(a->sin_addr.s_addr) >> 24) != 127) die("host must be loopback");
            g_addr_len = sizeof *a;
        }
    }
}

/* ---- connections -------------------------------------------------------- */
static void ep_set(conn_t *c, int idx, int want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u64 = (uint64_t)idx};
    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod: %s", strerror(errno));
    c->epout = want_out;
}

static void reset_parser(conn_t *c) {
    c->hdr_len = 0;
    c->hdr_need = 2;
    c->payload_left = 0;
    c->in_message = 0;
    c->msg_off = 0;
    c->ctrl_len = 0;
    c->hs_len = 0;
    c->frames_pending = 0;
    c->frame_off = 0;
    c->ctl_out_len = 0;
    c->ctl_close_after = 0;
    c->ts_head = 0;
    c->ts_count = 0;
    c->echoed = 0;
}

static void conn_close(conn_t *c, int rst) {
    if (c->fd < 0) return;
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->state = S_FREE;
    g_active--;
}

static int conn_start(int idx) {
    conn_t *c = &g_c[idx];
    reset_parser(c);
    c->target = g_mode == M_ALTERNATE ? idx : 0;
    int fd = socket(g_addr[c->target].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_error("socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->started_ns = now_ns();
    c->deadline_ns = c->started_ns + HANDSHAKE_TIMEOUT_NS;
    g_active++;
    int r = connect(fd, (struct sockaddr *)&g_addr[c->target], g_addr_len);
    if (r < 0 && errno != EINPROGRESS) {
        note_error("connect: %s", strerror(errno));
        conn_close(c, 1);
        return -1;
    }
    c->state = S_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)idx};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add: %s", strerror(errno));
    c->epout = 1;
    return 0;
}

static void queue_ctl(conn_t *c, uint8_t opcode, const uint8_t *payload, size_t len) {
    if ((size_t)c->ctl_out_len + len + 6 > sizeof c->ctl_out) return; /* drop excess pongs */
    c->ctl_out_len += (int)build_frame(c->ctl_out + c->ctl_out_len, opcode, payload, len);
}

static void queue_message(conn_t *c) {
    if (++g_sent_total > MAX_MESSAGES) {
        g_sending = 0;
        return;
    }
    c->frames_pending++;
    if (c->ts_cap > 0) {
        int slot = (c->ts_head + c->ts_count) % c->ts_cap;
        if (c->ts_count < c->ts_cap) {
            c->ts[slot] = now_ns();
            c->ts_count++;
        }
    }
}

/* returns -1 when the connection failed */
static int flush_out(conn_t *c, int idx) {
    for (;;) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        size_t total = 0;
        int ctl_in = 0;
        if (c->frame_off == 0 && c->ctl_out_len > 0) {
            iov[n].iov_base = c->ctl_out;
            iov[n].iov_len = (size_t)c->ctl_out_len;
            total += iov[n].iov_len;
            n++;
            ctl_in = 1;
        }
        uint64_t f = c->frames_pending;
        size_t off = c->frame_off;
        while (f > 0 && n < MAX_IOV) {
            iov[n].iov_base = g_frame + off;
            iov[n].iov_len = g_frame_len - off;
            total += iov[n].iov_len;
            off = 0;
            n++;
            f--;
        }
        if (n == 0) break;
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            note_error("write: %s", strerror(errno));
            return -1;
        }
        size_t left = (size_t)w;
        if (ctl_in) {
            if (left >= (size_t)c->ctl_out_len) {
                left -= (size_t)c->ctl_out_len;
                c->ctl_out_len = 0;
            } else {
                memmove(c->ctl_out, c->ctl_out + left, (size_t)c->ctl_out_len - left);
                c->ctl_out_len -= (int)left;
                left = 0;
            }
        }
        while (left > 0) {
            size_t rest = g_frame_len - c->frame_off;
            if (left >= rest) {
                left -= rest;
                c->frame_off = 0;
                c->frames_pending--;
            } else {
                c->frame_off += left;
                left = 0;
            }
        }
        if ((size_t)w < total) break;
    }
    int want = c->frames_pending > 0 || c->ctl_out_len > 0;
    if (want != c->epout) ep_set(c, idx, want);
    return 0;
}

/* a whole echo arrived on c */
static void on_echo(conn_t *c, int idx) {
    uint64_t t = now_ns();
    if (c->ts_count > 0) {
        uint64_t rtt = t - c->ts[c->ts_head];
        if (g_mode == M_ECHO || g_mode == M_ALTERNATE) record_latency(rtt);
        if (g_mode == M_ALTERNATE && g_measuring) hist_add(&g_tlat[c->target], rtt);
        c->ts_head = (c->ts_head + 1) % c->ts_cap;
        c->ts_count--;
    }
    c->echoed = 1;
    if (g_mode == M_ECHO) {
        if (g_measuring) {
            n_msgs++;
            n_bytes += g_expect_len;
        }
        if (g_sending) queue_message(c);
    } else if (g_mode == M_ALTERNATE) {
        if (g_measuring) {
            n_msgs++;
            n_bytes += g_expect_len;
        }
        if (!g_sending) return;
        if (++g_block_done < g_block) {
            queue_message(c);
            return;
        }
        g_block_done = 0;
        int next = (idx + 1) % g_conns;
        queue_message(&g_c[next]);
        if (next != idx) flush_out(&g_c[next], next); /* handle() flushes c itself */
    } else if (g_mode == M_CONNECT) {
        uint8_t code[2] = {0x03, 0xe8}; /* 1000 normal closure */
        queue_ctl(c, 0x8, code, 2);
        c->state = S_CLOSING;
    } else { /* hold: the connection is now verified and idle */
        g_open_count++;
        (void)idx;
    }
}

/* feed received frame bytes; returns -1 on protocol error, 1 when the server closed */
static int parse_frames(conn_t *c, int idx, const uint8_t *p, size_t n) {
    while (n > 0) {
        if (c->payload_left == 0 && c->hdr_len < c->hdr_need) {
            size_t take = (size_t)(c->hdr_need - c->hdr_len);
            if (take > n) take = n;
            memcpy(c->hdr + c->hdr_len, p, take);
            c->hdr_len += (int)take;
            p += take;
            n -= take;
            if (c->hdr_len < c->hdr_need) return 0;
            if (c->hdr_need == 2) {
                if (c->hdr[1] & 0x80) {
                    note_error("server sent a masked frame");
                    return -1;
                }
                uint8_t l7 = c->hdr[1] & 0x7f;
                if (l7 == 126) c->hdr_need = 4;
                if (l7 == 127) c->hdr_need = 10;
                if (c->hdr_need > 2) continue;
            }
            /* header complete */
            uint8_t l7 = c->hdr[1] & 0x7f;
            uint64_t len = l7;
            if (l7 == 126) len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
            if (l7 == 127) {
                len = 0;
                for (int i = 2; i < 10; i++) len = (len << 8) | c->hdr[i];
            }
            c->fin = c->hdr[0] >> 7;
            c->opcode = c->hdr[0] & 0x0f;
            c->hdr_len = 0;
            c->hdr_need = 2;
            if (c->opcode >= 0x8) {
                if (len > 125 || !c->fin) {
                    note_error("bad control frame");
                    return -1;
                }
                c->ctrl_len = 0;
            } else {
                if (c->opcode == 0x0 && !c->in_message) {
                    note_error("unexpected continuation frame");
                    return -1;
                }
                if (c->opcode != 0x0) {
                    if (c->in_message) {
                        note_error("data frame inside a fragmented message");
                        return -1;
                    }
                    if (c->opcode != 0x1) {
                        note_error("expected a text frame, got opcode %d", c->opcode);
                        return -1;
                    }
                    c->in_message = 1;
                    c->msg_off = 0;
                }
                if (c->msg_off + len > g_expect_len) {
                    note_error("echo too long (%llu bytes, expected %zu)",
                               (unsigned long long)(c->msg_off + len), g_expect_len);
                    return -1;
                }
            }
            c->payload_left = len;
            if (len > 0) continue;
        } else {
            size_t take = c->payload_left < n ? (size_t)c->payload_left : n;
            if (c->opcode >= 0x8) {
                memcpy(c->ctrl + c->ctrl_len, p, take);
                c->ctrl_len += (int)take;
            } else {
                if (memcmp(p, g_expect + c->msg_off, take) != 0) {
                    note_error("echo bytes differ from \"" PREFIX "\" + payload");
                    return -1;
                }
                c->msg_off += take;
            }
            c->payload_left -= take;
            p += take;
            n -= take;
            if (c->payload_left > 0) return 0;
        }
        /* frame complete (payload_left == 0) */
        if (c->opcode == 0x9) {
            queue_ctl(c, 0xA, c->ctrl, (size_t)c->ctrl_len);
        } else if (c->opcode == 0xA) {
            /* unsolicited pong: ignore */
        } else if (c->opcode == 0x8) {
            if (c->state == S_CLOSING) {
                c->state = S_WAIT_EOF;
                c->deadline_ns = now_ns() + CLOSE_WAIT_NS;
                /* a pong or close still queued is no longer needed */
                c->ctl_out_len = 0;
                c->frames_pending = 0;
                c->frame_off = 0;
                continue;
            }
            note_error("server closed the WebSocket (close frame, %d bytes)", c->ctrl_len);
            return 1;
        } else if (c->fin) {
            if (c->msg_off != g_expect_len) {
                note_error("echo too short (%llu bytes, expected %zu)",
                           (unsigned long long)c->msg_off, g_expect_len);
                return -1;
            }
            c->in_message = 0;
            c->msg_off = 0;
            if (c->state == S_OPEN) on_echo(c, idx);
        }
    }
    return 0;
}

/* handshake bytes; returns -1 on failure, 0 waiting, 1 done */
static int on_handshake(conn_t *c, int idx, const uint8_t *p, size_t n) {
    if (c->hs == NULL) c->hs = malloc(HS_MAX + 1);
    size_t room = (size_t)(HS_MAX - c->hs_len);
    size_t take = n < room ? n : room;
    memcpy(c->hs + c->hs_len, p, take);
    c->hs_len += (int)take;
    c->hs[c->hs_len] = '\0';
    char *end = strstr(c->hs, "\r\n\r\n");
    if (end == NULL) {
        if (c->hs_len >= HS_MAX) {
            note_error("handshake response too long");
            return -1;
        }
        return 0;
    }
    if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
        char *eol = strstr(c->hs, "\r\n");
        if (eol) *eol = '\0';
        note_error("handshake refused: %.120s", c->hs);
        return -1;
    }
    if (strcasestr(c->hs, WS_ACCEPT) == NULL) {
        note_error("handshake: wrong Sec-WebSocket-Accept");
        return -1;
    }
    size_t hdr_bytes = (size_t)(end + 4 - c->hs);
    /* bytes read in this call that belong after the header */
    size_t before = (size_t)c->hs_len - take;
    size_t extra_off = hdr_bytes > before ? hdr_bytes - before : 0;
    c->state = S_OPEN;
    c->hs_len = 0;
    if (g_mode == M_CONNECT || g_mode == M_HOLD) queue_message(c); /* one echo */
    if (extra_off < n) {
        int r = parse_frames(c, idx, p + extra_off, n - extra_off);
        if (r != 0) return -1;
    }
    return 1;
}

static void slot_failed(int idx) {
    conn_t *c = &g_c[idx];
    conn_close(c, 1);
    if (g_mode == M_HOLD) g_failed++;
}

static void handle(int idx, uint32_t events) {
    conn_t *c = &g_c[idx];
    if (c->fd < 0) return;
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
            note_error("connect: %s", strerror(err ? err : ECONNREFUSED));
            slot_failed(idx);
            return;
        }
        if (!(events & EPOLLOUT)) return;
        ssize_t w = write(c->fd, g_request[c->target], (size_t)g_request_len[c->target]);
        if (w != g_request_len[c->target]) {
            note_error("handshake write failed");
            slot_failed(idx);
            return;
        }
        c->state = S_HANDSHAKE;
        ep_set(c, idx, 0);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t r = read(c->fd, g_rbuf, sizeof g_rbuf);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            if (c->state == S_WAIT_EOF) { /* clean end of a connect cycle */
                n_cycles += g_measuring;
                record_latency(now_ns() - c->started_ns);
                conn_close(c, 0);
                return;
            }
            if (r == 0)
                note_error("server closed the TCP connection");
            else
                note_error("read: %s", strerror(errno));
            if (c->state == S_OPEN && c->echoed && g_mode == M_HOLD) g_open_count--;
            slot_failed(idx);
            return;
        }
        if (r > 0) {
            int res;
            if (c->state == S_HANDSHAKE) {
                res = on_handshake(c, idx, g_rbuf, (size_t)r);
                if (res == 0) return;
                res = res < 0 ? -1 : 0;
            } else {
                res = parse_frames(c, idx, g_rbuf, (size_t)r);
            }
            if (res != 0) {
                if (c->state == S_OPEN && c->echoed && g_mode == M_HOLD) g_open_count--;
                slot_failed(idx);
                return;
            }
        }
    }
    if (c->fd >= 0 && c->state != S_WAIT_EOF) {
        if (flush_out(c, idx) < 0) slot_failed(idx);
    }
}

/* expire handshakes and close waits */
static void sweep(uint64_t t) {
    for (int i = 0; i < g_nslots; i++) {
        conn_t *c = &g_c[i];
        if (c->fd < 0) continue;
        if ((c->state == S_CONNECTING || c->state == S_HANDSHAKE) && t > c->deadline_ns) {
            note_error("handshake timed out");
            slot_failed(i);
        } else if (c->state == S_WAIT_EOF && t > c->deadline_ns) {
            /* the close handshake finished; the server did not close TCP in time */
            n_close_timeouts += g_measuring;
            n_cycles += g_measuring;
            record_latency(t - c->started_ns);
            conn_close(c, 1);
        }
    }
}

static int run_loop_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(g_ep, evs, 512, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return 0;
        die("epoll_wait: %s", strerror(errno));
    }
    int stdin_event = 0;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == STDIN_TAG) {
            stdin_event = 1;
            continue;
        }
        handle((int)evs[i].data.u64, evs[i].events);
    }
    return stdin_event;
}

static void json_escape(char *dst, size_t cap, const char *src) {
    size_t j = 0;
    for (size_t i = 0; src[i] && j + 7 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch == '"' || ch == '\\') {
            dst[j++] = '\\';
            dst[j++] = (char)ch;
        } else if (ch < 0x20) {
            j += (size_t)snprintf(dst + j, cap - j, "\\u%04x", ch);
        } else {
            dst[j++] = (char)ch;
        }
    }
    dst[j] = '\0';
}

static const char *mode_name(void) {
    switch (g_mode) {
    case M_ECHO: return "echo";
    case M_CONNECT: return "connect";
    case M_HOLD: return "hold";
    default: return "alternate";
    }
}

static void print_result(double window_s, double cpu_s, const char *extra) {
    char err[600];
    json_escape(err, sizeof err, g_first_error);
    char lat[400];
    hist_json(lat, sizeof lat, &g_lat);
    char targets[MAX_PORTS * 420 + 32] = "";
    if (g_mode == M_ALTERNATE) {
        size_t n = (size_t)snprintf(targets, sizeof targets, ", \"targets\": [");
        for (int t = 0; t < g_nports; t++) {
            n += (size_t)snprintf(targets + n, sizeof targets - n, "%s{\"port\": %d, ",
                                  t ? ", " : "", g_ports[t]);
            n += (size_t)hist_json(targets + n, sizeof targets - n, &g_tlat[t]);
            n += (size_t)snprintf(targets + n, sizeof targets - n, "}");
        }
        snprintf(targets + n, sizeof targets - n, "]");
    }
    emit("RESULT {\"mode\": \"%s\", \"conns\": %d, \"inflight\": %d, \"size\": %zu, "
         "\"window_s\": %.6f, \"messages\": %llu, \"bytes\": %llu, \"cycles\": %llu, "
         "\"close_timeouts\": %llu, \"errors\": %llu, \"first_error\": \"%s\", "
         "\"client_cpu_s\": %.6f, \"latency_ns\": {%s}%s%s}\n",
         mode_name(), g_conns, g_inflight, g_size, window_s, (unsigned long long)n_msgs,
         (unsigned long long)n_bytes, (unsigned long long)n_cycles,
         (unsigned long long)n_close_timeouts, (unsigned long long)n_errors, err, cpu_s, lat,
         targets, extra);
}

static void start_window(void) {
    n_msgs = n_bytes = n_cycles = n_close_timeouts = 0;
    n_errors = 0;
    g_first_error[0] = '\0';
    memset(&g_lat, 0, sizeof g_lat);
    memset(g_tlat, 0, sizeof g_tlat);
    g_measuring = 1;
}

static void close_all(void) {
    for (int i = 0; i < g_nslots; i++)
        if (g_c[i].fd >= 0) conn_close(&g_c[i], 1);
}

/* ---- modes -------------------------------------------------------------- */
static int run_echo(void) {
    uint64_t setup_end = now_ns() + (uint64_t)(g_setup_seconds * 1e9);
    int next = 0;
    /* open every connection, g_open_conc handshakes at a time */
    for (;;) {
        int pending = 0;
        for (int i = 0; i < next; i++)
            if (g_c[i].fd >= 0 && g_c[i].state != S_OPEN) pending++;
        while (next < g_conns && pending < g_open_conc) {
            if (conn_start(next) < 0) die("connect failed: %s", g_first_error);
            next++;
            pending++;
        }
        int open = 0;
        for (int i = 0; i < next; i++)
            if (g_c[i].fd >= 0 && g_c[i].state == S_OPEN) open++;
        if (n_errors > 0) die("could not open connection %d: %s", open, g_first_error);
        if (open == g_conns) break;
        if (now_ns() > setup_end) die("timed out opening connections (%d open)", open);
        run_loop_once(50);
        sweep(now_ns());
    }
    /* start: D messages in flight on every connection (alternate: one, on the first) */
    for (int i = 0; i < (g_mode == M_ALTERNATE ? 1 : g_conns); i++) {
        for (int k = 0; k < g_inflight; k++) queue_message(&g_c[i]);
        if (flush_out(&g_c[i], i) < 0) die("send failed: %s", g_first_error);
    }
    uint64_t t0 = now_ns();
    uint64_t w_start = t0 + (uint64_t)(g_warmup * 1e9);
    uint64_t w_end = w_start + (uint64_t)(g_duration * 1e9);
    double cpu0 = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!g_measuring && t >= w_start) {
            start_window();
            cpu0 = cpu_seconds();
            emit("START %llu\n", (unsigned long long)t);
        }
        if (g_measuring && t >= w_end) {
            double cpu = cpu_seconds() - cpu0;
            g_measuring = 0;
            emit("END %llu\n", (unsigned long long)t);
            print_result((double)(t - w_start) / 1e9, cpu, "");
            break;
        }
        if (n_errors > 0 || g_active < g_conns) {
            emit("END %llu\n", (unsigned long long)t);
            print_result((double)(t - w_start) / 1e9, 0, "");
            fprintf(stderr, "loadgen: echo run failed: %s\n", g_first_error);
            close_all();
            return 2;
        }
        uint64_t until = g_measuring ? w_end : w_start;
        int ms = (int)((until - t) / 1000000ull) + 1;
        run_loop_once(ms < 100 ? ms : 100);
    }
    close_all();
    return 0;
}

static int run_connect(void) {
    uint64_t t0 = now_ns();
    uint64_t w_start = t0 + (uint64_t)(g_warmup * 1e9);
    uint64_t w_end = w_start + (uint64_t)(g_duration * 1e9);
    double cpu0 = 0;
    uint64_t last_sweep = t0;
    uint64_t total_errors = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!g_measuring && t >= w_start) {
            total_errors += n_errors;
            start_window();
            cpu0 = cpu_seconds();
            emit("START %llu\n", (unsigned long long)t);
        }
        if (g_measuring && t >= w_end) {
            double cpu = cpu_seconds() - cpu0;
            g_measuring = 0;
            emit("END %llu\n", (unsigned long long)t);
            print_result((double)(t - w_start) / 1e9, cpu, "");
            break;
        }
        if (total_errors + n_errors > 1000) {
            emit("END %llu\n", (unsigned long long)t);
            print_result((double)(t - w_start) / 1e9, 0, "");
            fprintf(stderr, "loadgen: too many errors: %s\n", g_first_error);
            close_all();
            return 2;
        }
        for (int i = 0; i < g_nslots && g_connects_total < MAX_CONNECTS; i++)
            if (g_c[i].fd < 0) {
                g_connects_total++;
                conn_start(i);
            }
        run_loop_once(10);
        if (t - last_sweep > 20000000ull) {
            sweep(t);
            last_sweep = t;
        }
    }
    close_all();
    return 0;
}

static int run_hold(void) {
    /* stdin closing ends the hold */
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
    int watch_stdin = epoll_ctl(g_ep, EPOLL_CTL_ADD, 0, &ev) == 0;
    uint64_t t0 = now_ns();
    uint64_t setup_end = t0 + (uint64_t)(g_setup_seconds * 1e9);
    int next = 0;
    double cpu0 = cpu_seconds();
    uint64_t last_sweep = t0;
    for (;;) {
        /* started, neither verified by its echo nor failed */
        int pending = next - g_open_count - g_failed;
        while (next < g_conns && pending < g_open_conc) {
            if (conn_start(next) < 0) g_failed++;
            next++;
            pending++;
        }
        if (next == g_conns && pending == 0) break;
        if (now_ns() > setup_end) {
            fprintf(stderr, "loadgen: timed out opening connections\n");
            break;
        }
        if (run_loop_once(50) && watch_stdin) break;
        uint64_t t = now_ns();
        if (t - last_sweep > 100000000ull) {
            sweep(t);
            last_sweep = t;
        }
    }
    uint64_t t1 = now_ns();
    emit("READY %d %d\n", g_open_count, g_failed);
    uint64_t hold_end = t1 + (uint64_t)(g_hold_seconds * 1e9);
    for (;;) {
        uint64_t t = now_ns();
        if (t >= hold_end) break;
        int ms = (int)((hold_end - t) / 1000000ull) + 1;
        if (run_loop_once(ms < 200 ? ms : 200)) {
            char buf[256];
            ssize_t r = read(0, buf, sizeof buf);
            if (r <= 0) break;
            break; /* any line also ends the hold */
        }
    }
    char extra[200];
    snprintf(extra, sizeof extra,
             ", \"opened\": %d, \"failed\": %d, \"open_at_end\": %d, \"open_seconds\": %.6f",
             g_open_count, g_failed, g_active, (double)(t1 - t0) / 1e9);
    print_result((double)(now_ns() - t1) / 1e9, cpu_seconds() - cpu0, extra);
    close_all();
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --mode echo|connect|hold --port N [--host 127.0.0.1] [--path /]\n"
            "       loadgen --mode alternate --ports N,N,... [--block MESSAGES] ...\n"
            "       [--conns N] [--inflight D] [--size BYTES] [--warmup S] [--duration S]\n"
            "       [--open-concurrency P] [--hold-seconds S] [--setup-seconds S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "echo"))
                g_mode = M_ECHO;
            else if (!strcmp(v, "connect"))
                g_mode = M_CONNECT;
            else if (!strcmp(v, "hold"))
                g_mode = M_HOLD;
            else if (!strcmp(v, "alternate"))
                g_mode = M_ALTERNATE;
            else
                usage();
        } else if (!strcmp(a, "--host"))
            g_host = v;
        else if (!strcmp(a, "--port") || !strcmp(a, "--ports")) {
            g_nports = 0;
            for (char *p = (char *)v; *p && g_nports < MAX_PORTS; p++) {
                g_ports[g_nports++] = atoi(p);
                while (*p && *p != ',') p++;
                if (!*p) break;
            }
        } else if (!strcmp(a, "--block"))
            g_block = atoi(v);
        else if (!strcmp(a, "--path"))
            g_path = v;
        else if (!strcmp(a, "--conns"))
            g_conns = atoi(v);
        else if (!strcmp(a, "--inflight"))
            g_inflight = atoi(v);
        else if (!strcmp(a, "--size"))
            g_size = (size_t)atol(v);
        else if (!strcmp(a, "--warmup"))
            g_warmup = atof(v);
        else if (!strcmp(a, "--duration"))
            g_duration = atof(v);
        else if (!strcmp(a, "--open-concurrency"))
            g_open_conc = atoi(v);
        else if (!strcmp(a, "--hold-seconds"))
            g_hold_seconds = atof(v);
        else if (!strcmp(a, "--setup-seconds"))
            g_setup_seconds = atof(v);
        else
            usage();
    }
    if (g_nports < 1) usage();
    for (int t = 0; t < g_nports; t++)
        if (g_ports[t] <= 0 || g_ports[t] > 65535) usage();
    if (g_mode == M_ALTERNATE) {
        g_conns = g_nports;
        g_inflight = 1;
        if (g_block <= 0) usage();
    } else if (g_nports != 1) {
        usage();
    }
    if (g_conns <= 0 || g_conns > 60000) usage();
    if (g_inflight <= 0 || g_inflight > 4096 || g_open_conc <= 0 || g_open_conc > 60000) usage();
    if (g_size > (64u << 20)) die("--size too large");
    if (g_duration <= 0 || g_duration > 600 || g_warmup < 0 || g_warmup > 600) usage();
    if (g_hold_seconds > 3600 || g_setup_seconds > 600) usage();

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    prepare();
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) die("epoll_create1: %s", strerror(errno));
    g_nslots = g_mode == M_CONNECT ? g_open_conc : g_conns;
    g_c = calloc((size_t)g_nslots, sizeof *g_c);
    int cap = g_mode == M_ECHO ? g_inflight : 1;
    for (int i = 0; i < g_nslots; i++) {
        g_c[i].fd = -1;
        g_c[i].ts_cap = cap;
        g_c[i].ts = calloc((size_t)cap, sizeof(uint64_t));
    }
    if (g_mode == M_HOLD) g_measuring = 0;
    int rc = g_mode == M_ECHO || g_mode == M_ALTERNATE ? run_echo()
             : g_mode == M_CONNECT                     ? run_connect()
                                                       : run_hold();
    return rc;
}
