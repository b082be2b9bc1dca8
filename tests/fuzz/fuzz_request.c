/* fuzz_request: raw bytes to the real HTTP server, end to end. The input is sent as it is
 * over a loopback TCP connection to libmicrohttpd driven by src/httpd.c on the runtime's loop,
 * whose requests src/l_httpd.c hands to the real API router (lua/assetd/api.lua and files.lua
 * over a real job store); the client half-closes and reads the answer until the server closes.
 * Loopback TCP rather than a socketpair because httpd.c only listens (it has no way to adopt
 * a descriptor) and fuzzing that code is the point; one short connection per input, never
 * waiting on a timer, keeps each run bounded (a server still busy 2 s after the end of the
 * request fails the run).
 * Properties (request.lua, which sets the server up): the answer starts with an HTTP status
 * line and is never a 500 (a route that raised); no answer ever holds a byte of a file
 * outside the storage root (reached through a planted symlink), of a .part file or of a dot
 * file; the handler only ever sees NUL-free paths, lowercase header names and header values
 * without NUL, CR or LF. */
#include "harness.h"
#include "lua_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

enum { ANSWER_CAP = 1 << 20, WAIT_MS = 2000, QUIET = 3 };

static int ref, port;
static char dir[] = "/tmp/assetd-fuzz-request-XXXXXX";

/* The storage root with what must never be served: a file outside it reached by symlinks
 * (one a file, one a batch directory), a .part, a dot file; and a FIFO, which opened on the
 * loop without O_NONBLOCK would hang it. The markers hold a control byte, which the JSON of
 * an error message escapes, so an echoed request can never spell one. */
static void plant(const char *rel, const char *content) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "w");
    FUZZ_CHECK(f && fputs(content, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

static void plant_tree(void) {
    char path[512];
    FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    const char *dirs[] = {"root", "root/b1", "root/b1/sub.mp4", "outside", "data"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, dirs[i]);
        FUZZ_CHECK(mkdir(path, 0755) == 0, "mkdir %s: %s", path, strerror(errno));
    }
    plant("root/b1/vid_V1.mp4", "\x01" "LEGIT-ASSET-BYTES");
    plant("root/b1/.vid_V2.mp4.part", "\x01" "PARTIAL-BYTES");
    plant("root/b1/.hidden", "\x01" "DOT-FILE-BYTES");
    plant("outside/secret.mp4", "\x01" "OUTSIDE-THE-ROOT");
    snprintf(path, sizeof path, "%s/root/b1/link.mp4", dir);
    FUZZ_CHECK(symlink("../../outside/secret.mp4", path) == 0, "symlink: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/root/evil", dir);
    FUZZ_CHECK(symlink("../outside", path) == 0, "symlink: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/root/b1/fifo.mp4", dir);
    FUZZ_CHECK(mkfifo(path, 0644) == 0, "mkfifo: %s", strerror(errno));
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    remove(path);
    return 0;
}

/* libFuzzer ends the run with exit(): the tree and its job store go with it. */
static void remove_tree(void) { nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    plant_tree();
    atexit(remove_tree);
    ref = fuzz_lua_load("request");
    fuzz_str arg = {dir, strlen(dir)};
    port = (int)fuzz_lua_call(ref, "setup", &arg, 1);
    FUZZ_CHECK(port > 0, "the server did not start");
    uv_run(fuzz_lua_loop(), UV_RUN_NOWAIT);     /* libuv adds the server's poll to epoll here */
    return 0;
}

static int connect_server(void) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0, "socket: %s", strerror(errno));
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    FUZZ_CHECK(r == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
    return fd;
}

/* Let the loop run what is ready; whether anything was (a socket, or a timer due now:
 * httpd.c runs MHD again from a 0 ms timer when MHD has more to do). The server runs on
 * this thread and loopback delivers at send, so a few such rounds with nothing ready mean
 * it is waiting for the client (or a later timer), not working. */
static int pump(int fd, short events) {
    uv_loop_t *loop = fuzz_lua_loop();
    struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = uv_backend_fd(loop), .events = POLLIN}};
    int due = uv_backend_timeout(loop) == 0;
    int ready = poll(p, 2, 0) > 0;
    uv_run(loop, UV_RUN_NOWAIT);
    return ready || due;
}

/* Pump until the server has nothing left to do (QUIET rounds), reading what it sends. */
static size_t settle(int fd, size_t n_unsent, const uint8_t *rest, char *answer, size_t got) {
    uint64_t start = uv_hrtime();
    for (int quiet = 0; quiet < QUIET;) {
        if (n_unsent) {
            ssize_t w = send(fd, rest, n_unsent, MSG_NOSIGNAL);
            if (w > 0) { rest += w; n_unsent -= (size_t)w; }
            else if (w < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN) n_unsent = 0;
        }
        ssize_t r = fd >= 0 && got < ANSWER_CAP ? recv(fd, answer + got, ANSWER_CAP - got, 0) : -1;
        if (r > 0) { got += (size_t)r; quiet = 0; continue; }
        if (r == 0 && !n_unsent) fd = -1;            /* closed by the server: only its side is left */
        FUZZ_CHECK((uv_hrtime() - start) / 1000000 < WAIT_MS, "the server was still busy after %d ms", WAIT_MS);
        quiet = pump(fd, n_unsent ? POLLOUT | POLLIN : POLLIN) || n_unsent ? 0 : quiet + 1;
    }
    return got;
}

/* Send the request, read the answer until the server has nothing more to do, close, and let
 * the server see the close. The client never half-closes first: libmicrohttpd in epoll mode
 * misses an end of stream that came with the request's last bytes (a short read ends its
 * reading), answers, and then holds the connection until its timeout; a run of such inputs
 * would use up the per-address connection cap. */
static size_t exchange(const uint8_t *req, size_t n, char *answer) {
    int fd = connect_server();
    size_t got = settle(fd, n, req, answer, 0);
    close(fd);
    settle(-1, 0, NULL, answer, got);
    return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char *answer;
    if (!answer && !(answer = malloc(ANSWER_CAP))) abort();
    static unsigned runs;
    size_t got = exchange(data, size, answer);
    fuzz_str args[2] = {{(const char *)data, size}, {answer, got}};
    fuzz_lua_call(ref, "check", args, 2);
    /* now and then a plain request must still be answered: no input may leave the server
     * stuck, or holding connections its client closed */
    if (++runs % 256 == 0) {
        static const char probe[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        got = exchange((const uint8_t *)probe, sizeof probe - 1, answer);
        FUZZ_CHECK(got >= 12 && memcmp(answer, "HTTP/1.1 200", 12) == 0,
                   "after %u inputs, GET /healthz got %zu bytes: %.*s", runs, got, (int)(got < 80 ? got : 80), answer);
    }
    return 0;
}
