/*
 * openloop: a small open-loop (constant-rate) HTTP/1.1 load generator.
 *
 * Request i is *scheduled* at t0 + i/rate, whatever happened to earlier requests, and its
 * latency is measured from that scheduled time to the last byte of its response, so a
 * stalled server is charged for every request that should have been sent meanwhile (no
 * coordinated omission, as in wrk2). Requests go out on a pool of at most -c keep-alive
 * connections, one request in flight per connection (no pipelining). A connection is opened
 * only when a request needs one (so a server that closes after every response, like
 * Gunicorn's sync worker, is never left holding an idle accepted socket), idle connections
 * are reused most-recently-used first, and when every connection is busy, due requests wait
 * in order (their latency keeps counting from their scheduled time).
 *
 * Requests scheduled in the first -w seconds are a warm-up and are not reported. After the
 * last scheduled request the generator waits up to -D seconds for outstanding responses;
 * requests still unanswered then are reported as "unfinished" and enter the percentiles with
 * their age at that moment (a lower bound).
 *
 * Output: one JSON object on stdout (latencies in ms).
 *
 * Build:  gcc -O2 -o openloop openloop.c -lm
 * Usage:  openloop -p PORT -r RATE -d SECONDS -w WARMUP_S -c CONNS -f REQUEST_FILE
 *                  [-H 127.0.0.1] [-D DRAIN_S]
 *   REQUEST_FILE holds the complete raw HTTP/1.1 request (request line, headers, body).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { ST_CLOSED = 0, ST_CONNECTING, ST_IDLE, ST_BUSY };

typedef struct {
    int fd;
    int state;
    long req;        /* request index in flight, -1 if none */
    size_t woff;     /* bytes of the request written so far */
    char *buf;       /* response bytes received so far */
    size_t blen, bcap;
    int fresh;       /* connection not used for a request yet */
} conn_t;

static char *g_req;
static size_t g_req_len;
static struct sockaddr_in g_addr;
static int g_ep;
static conn_t *g_conns;
static int g_nconns;
static int *g_idle; /* stack of idle connection indices (MRU on top) */
static int g_nidle;

static double *g_lat;          /* per request: latency in s, or -1 = not finished */
static unsigned char *g_err;   /* per request: 0 ok, 1 http error, 2 socket error */
static double g_t0, g_interval;
static long g_total, g_warm_n;
static long g_inflight;
static long g_connects, g_connect_errors, g_socket_errors, g_http_errors;
static long g_completed_in_window;
static double g_win_start, g_win_end;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *msg) {
    fprintf(stderr, "openloop: %s: %s\n", msg, strerror(errno));
    exit(2);
}

static void ep_set(conn_t *c, uint32_t events, int op) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.ptr = c;
    if (epoll_ctl(g_ep, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static void conn_close(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = ST_CLOSED;
    c->blen = 0;
    c->woff = 0;
}

static void idle_remove(conn_t *c) {
    int idx = (int)(c - g_conns);
    for (int i = 0; i < g_nidle; i++) {
        if (g_idle[i] == idx) {
            memmove(&g_idle[i], &g_idle[i + 1], (size_t)(g_nidle - i - 1) * sizeof(int));
            g_nidle--;
            return;
        }
    }
}

static void finish(conn_t *c, unsigned char err, double t) {
    long r = c->req;
    if (r >= 0) {
        g_lat[r] = t - (g_t0 + (double)r * g_interval);
        g_err[r] = err;
        if (err == 1) g_http_errors++;
        if (err == 2) g_socket_errors++;
        if (t >= g_win_start && t < g_win_end) g_completed_in_window++;
        g_inflight--;
    }
    c->req = -1;
}

/* Write as much of the request as the socket takes; returns -1 on a socket error. */
static int conn_write(conn_t *c) {
    while (c->woff < g_req_len) {
        ssize_t n = send(c->fd, g_req + c->woff, g_req_len - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ep_set(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                return 0;
            }
            if (errno == EINTR) continue;
            return -1;
        }
        c->woff += (size_t)n;
    }
    return 0;
}

static void conn_fail(conn_t *c, double t) {
    finish(c, 2, t);
    conn_close(c);
}

static void start_request(conn_t *c, long r, double t) {
    c->req = r;
    c->woff = 0;
    c->blen = 0;
    g_inflight++;
    if (c->state == ST_CONNECTING) return; /* sent once connected */
    c->state = ST_BUSY;
    c->fresh = 0;
    if (conn_write(c) < 0) conn_fail(c, t);
}

/* Open a connection for request r (sent when the connect completes). */
static void conn_open(conn_t *c, long r, double t) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->fresh = 1;
    g_connects++;
    int rc = connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr);
    if (rc == 0) {
        c->state = ST_IDLE;
        ep_set(c, EPOLLIN, EPOLL_CTL_ADD);
        start_request(c, r, t);
        return;
    }
    if (errno != EINPROGRESS) {
        g_connect_errors++;
        c->req = r;
        g_inflight++;
        conn_fail(c, t);
        return;
    }
    c->state = ST_CONNECTING;
    ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
    start_request(c, r, t);
}

/* Is a complete response in c->buf? Returns 1 if so (status and close flag filled in). */
static int response_complete(conn_t *c, int *status, int *close_after, int eof) {
    char *b = c->buf;
    size_t n = c->blen;
    char *hdr_end = memmem(b, n, "\r\n\r\n", 4);
    if (!hdr_end) return 0;
    size_t hlen = (size_t)(hdr_end - b) + 4;
    *status = 0;
    if (n >= 12 && strncmp(b, "HTTP/1.", 7) == 0) *status = atoi(b + 9);
    *close_after = (strncmp(b, "HTTP/1.0", 8) == 0);
    long clen = -1;
    int chunked = 0;
    /* scan header lines */
    char *p = memchr(b, '\n', hlen);
    while (p && (size_t)(p - b) + 1 < hlen) {
        char *line = p + 1;
        char *eol = memchr(line, '\n', hlen - (size_t)(line - b));
        if (!eol) break;
        size_t ll = (size_t)(eol - line);
        if (ll >= 15 && strncasecmp(line, "content-length:", 15) == 0) {
            clen = strtol(line + 15, NULL, 10);
        } else if (ll >= 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
            if (memmem(line, ll, "chunked", 7)) chunked = 1;
        } else if (ll >= 11 && strncasecmp(line, "connection:", 11) == 0) {
            if (memmem(line, ll, "close", 5) || memmem(line, ll, "Close", 5)) *close_after = 1;
            if (memmem(line, ll, "keep-alive", 10) || memmem(line, ll, "Keep-Alive", 10))
                *close_after = 0;
        }
        p = eol;
    }
    if (chunked) {
        size_t pos = hlen;
        for (;;) {
            char *le = memmem(b + pos, n - pos, "\r\n", 2);
            if (!le) return 0;
            long sz = strtol(b + pos, NULL, 16);
            pos = (size_t)(le - b) + 2;
            if (sz == 0) {
                /* no trailers expected: final CRLF */
                return n >= pos + 2;
            }
            pos += (size_t)sz + 2;
            if (pos > n) return 0;
        }
    }
    if (clen >= 0) return n >= hlen + (size_t)clen;
    if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200)) return 1;
    /* no length: the body ends at EOF */
    *close_after = 1;
    return eof;
}

static void on_readable(conn_t *c, double t) {
    for (;;) {
        if (c->bcap - c->blen < 4096) {
            c->bcap = c->bcap ? c->bcap * 2 : 16384;
            c->buf = realloc(c->buf, c->bcap);
            if (!c->buf) die("realloc");
        }
        ssize_t n = recv(c->fd, c->buf + c->blen, c->bcap - c->blen, 0);
        if (n > 0) {
            c->blen += (size_t)n;
            if (c->req < 0) { c->blen = 0; continue; } /* unsolicited bytes: ignore */
            int status, close_after;
            if (response_complete(c, &status, &close_after, 0)) {
                finish(c, (status >= 200 && status < 300) ? 0 : 1, t);
                c->blen = 0;
                if (close_after) {
                    conn_close(c);
                } else {
                    c->state = ST_IDLE;
                    g_idle[g_nidle++] = (int)(c - g_conns);
                }
                return;
            }
            continue;
        }
        if (n == 0) { /* EOF */
            if (c->req >= 0) {
                int status, close_after;
                if (c->blen && response_complete(c, &status, &close_after, 1))
                    finish(c, (status >= 200 && status < 300) ? 0 : 1, t);
                else
                    finish(c, 2, t);
            } else if (c->state == ST_IDLE) {
                idle_remove(c); /* the server closed an idle keep-alive connection */
            }
            conn_close(c);
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        if (c->state == ST_IDLE) idle_remove(c);
        if (c->req >= 0) finish(c, 2, t);
        conn_close(c);
        return;
    }
}

static void on_event(conn_t *c, uint32_t ev, double t) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            g_connect_errors++;
            conn_fail(c, t);
            return;
        }
        c->state = ST_BUSY;
        c->fresh = 0;
        ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
        if (conn_write(c) < 0) conn_fail(c, t);
        return;
    }
    if ((ev & EPOLLOUT) && c->state == ST_BUSY) {
        if (conn_write(c) < 0) { conn_fail(c, t); return; }
        if (c->woff >= g_req_len) ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c, t);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, long n, double q) {
    if (n <= 0) return NAN;
    long k = (long)ceil(q * (double)n) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return v[k];
}

static void json_num(const char *key, double v, int last) {
    if (isnan(v)) printf("\"%s\":null%s", key, last ? "" : ",");
    else printf("\"%s\":%.4f%s", key, v, last ? "" : ",");
}

static void usage(void) {
    fprintf(stderr,
            "usage: openloop -p PORT -r RATE -d SECONDS -w WARMUP_S -c CONNS -f REQUEST_FILE "
            "[-H HOST] [-D DRAIN_S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *file = NULL;
    int port = 0, conns = 16, opt;
    double rate = 0, duration = 10, warmup = 3, drain = 5;
    while ((opt = getopt(argc, argv, "H:p:r:d:w:c:f:D:")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'c': conns = atoi(optarg); break;
        case 'f': file = optarg; break;
        case 'D': drain = atof(optarg); break;
        default: usage();
        }
    }
    if (!file || port <= 0 || rate <= 0 || duration <= 0 || warmup < 0 || conns <= 0 ||
        drain < 0)
        usage();
    signal(SIGPIPE, SIG_IGN);

    FILE *f = fopen(file, "rb");
    if (!f) die("open request file");
    struct stat st;
    if (fstat(fileno(f), &st) < 0) die("stat");
    g_req_len = (size_t)st.st_size;
    g_req = malloc(g_req_len + 1);
    if (!g_req || fread(g_req, 1, g_req_len, f) != g_req_len) die("read request file");
    fclose(f);

    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) {
        fprintf(stderr, "openloop: bad IPv4 address %s\n", host);
        return 2;
    }

    g_interval = 1.0 / rate;
    g_warm_n = (long)llround(warmup * rate);
    g_total = g_warm_n + (long)llround(duration * rate);
    if (g_total > 50000000L) {
        fprintf(stderr, "openloop: rate*time too large (%ld requests)\n", g_total);
        return 2;
    }
    g_lat = malloc((size_t)g_total * sizeof(double));
    g_err = calloc((size_t)g_total, 1);
    if (!g_lat || !g_err) die("malloc");
    for (long i = 0; i < g_total; i++) g_lat[i] = -1.0;

    g_nconns = conns;
    g_conns = calloc((size_t)conns, sizeof(conn_t));
    g_idle = calloc((size_t)conns, sizeof(int));
    for (int i = 0; i < conns; i++) { g_conns[i].fd = -1; g_conns[i].req = -1; }

    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) die("epoll_create1");
    struct epoll_event events[256];

    g_t0 = now_s() + 0.001;
    double t_sched_end = g_t0 + (double)g_total * g_interval;
    double t_stop = t_sched_end + drain;
    g_win_start = g_t0 + (double)g_warm_n * g_interval;
    g_win_end = t_sched_end;
    long next = 0;
    int have_pwait2 = 1;
    double t;

    for (;;) {
        t = now_s();
        /* dispatch every due request to an idle (MRU) or a new connection */
        while (next < g_total && g_t0 + (double)next * g_interval <= t) {
            if (g_nidle > 0) {
                conn_t *c = &g_conns[g_idle[--g_nidle]];
                start_request(c, next++, t);
                continue;
            }
            conn_t *free_c = NULL;
            for (int i = 0; i < g_nconns; i++)
                if (g_conns[i].state == ST_CLOSED) { free_c = &g_conns[i]; break; }
            if (!free_c) break; /* all busy: the request waits, its clock running */
            conn_open(free_c, next++, t);
        }
        if (next >= g_total && g_inflight == 0) break;
        if (t >= t_stop) break;

        double wake = t_stop;
        if (next < g_total) {
            int can_send = g_nidle > 0;
            for (int i = 0; !can_send && i < g_nconns; i++)
                if (g_conns[i].state == ST_CLOSED) can_send = 1;
            double due = g_t0 + (double)next * g_interval;
            if (can_send && due < wake) wake = due;
        }
        double dt = wake - t;
        if (dt < 0) dt = 0;
        int n;
        if (have_pwait2) {
            struct timespec ts;
            ts.tv_sec = (time_t)dt;
            ts.tv_nsec = (long)((dt - (double)ts.tv_sec) * 1e9);
            n = epoll_pwait2(g_ep, events, 256, &ts, NULL);
            if (n < 0 && errno == ENOSYS) { have_pwait2 = 0; continue; }
        } else {
            n = epoll_wait(g_ep, events, 256, (int)(dt * 1000.0)); /* sub-ms: spins */
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        t = now_s();
        for (int i = 0; i < n; i++) on_event((conn_t *)events[i].data.ptr, events[i].events, t);
    }
    t = now_s();

    /* report the measured window: requests scheduled after the warm-up */
    long n_meas = g_total - g_warm_n, ok = 0, unfinished = 0, http_err = 0, sock_err = 0;
    double *v = malloc((size_t)(n_meas > 0 ? n_meas : 1) * sizeof(double));
    double sum = 0;
    for (long i = g_warm_n; i < g_total; i++) {
        double l = g_lat[i];
        if (l < 0) {
            unfinished++;
            l = t - (g_t0 + (double)i * g_interval);
            if (l < 0) l = 0;
        } else if (g_err[i] == 1) http_err++;
        else if (g_err[i] == 2) sock_err++;
        else ok++;
        v[i - g_warm_n] = l * 1000.0;
        sum += l * 1000.0;
    }
    qsort(v, (size_t)n_meas, sizeof(double), cmp_double);
    double window = g_win_end - g_win_start;
    printf("{\"rate\":%.3f,\"duration_s\":%.3f,\"warmup_s\":%.3f,\"connections\":%d,",
           rate, duration, warmup, conns);
    printf("\"scheduled\":%ld,\"ok\":%ld,\"http_errors\":%ld,\"socket_errors\":%ld,"
           "\"unfinished\":%ld,\"connects\":%ld,\"connect_errors\":%ld,",
           n_meas, ok, http_err, sock_err, unfinished, g_connects, g_connect_errors);
    json_num("achieved_rps", window > 0 ? (double)g_completed_in_window / window : NAN, 0);
    json_num("mean_ms", n_meas ? sum / (double)n_meas : NAN, 0);
    json_num("p50_ms", pct(v, n_meas, 0.50), 0);
    json_num("p90_ms", pct(v, n_meas, 0.90), 0);
    json_num("p99_ms", pct(v, n_meas, 0.99), 0);
    json_num("p999_ms", pct(v, n_meas, 0.999), 0);
    json_num("max_ms", n_meas ? v[n_meas - 1] : NAN, 1);
    printf("}\n");
    return 0;
}
