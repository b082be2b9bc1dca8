/* l_httpd.c: `assetd.http_listen{listen=, handler=}`, `assetd.http_stream(cap)`,
 * `assetd.file_info(root, rel)` and `assetd.probe_write(dir)`. The handler is a Lua function
 * called with a request table {method, path, query, headers, body, remote, local_addr,
 * local_port} that returns a response table {status, headers, body}, {status, headers, root,
 * file, offset, length} (FILE relative to ROOT, opened without following symlinks, streamed)
 * or {status, headers, stream} (a body written later through the stream object, for
 * Server-Sent Events); it runs as a task and may wait. A raised error becomes a bare 500. The server returned
 * is closed by :close(), a <close> variable, the collector or the daemon's stop, whichever
 * comes first. */
#include "httpd.h"
#include "lbind.h"
#include "lmodules.h"
#include "log.h"
#include "path.h"
#include "runtime.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SERVER_MT "assetd.httpserver"
#define STREAM_MT "assetd.httpstream"
#define MAX_HEADERS 32

typedef struct lserver {
    httpd *h;                    /* owned; NULL once closed */
    lua_State *L;
    int fn, ref;                 /* handler; pin of the userdata while listening */
    rt_closer closer;            /* the daemon's stop closes it through here */
} lserver;

static void set_pair(const char *k, const char *v, void *ud) {
    lua_State *L = ud;
    char name[128];
    size_t i = 0;
    for (; k[i] && i < sizeof name - 1; i++) name[i] = (char)tolower((unsigned char)k[i]);
    name[i] = '\0';
    lua_pushstring(L, v);
    lua_setfield(L, -2, name);
}

static void set_arg(const char *k, const char *v, void *ud) {
    lua_State *L = ud;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void push_request(lua_State *L, httpd_req *r) {
    size_t len;
    int port;
    const char *body = httpd_req_body(r, &len);
    lua_createtable(L, 0, 8);
    lua_pushstring(L, httpd_req_local(r, &port));
    lua_setfield(L, -2, "local_addr");
    lua_pushinteger(L, port);
    lua_setfield(L, -2, "local_port");
    lua_pushstring(L, httpd_req_method(r));
    lua_setfield(L, -2, "method");
    lua_pushstring(L, httpd_req_path(r));
    lua_setfield(L, -2, "path");
    lua_pushstring(L, httpd_req_remote(r));
    lua_setfield(L, -2, "remote");
    lua_pushlstring(L, body, len);
    lua_setfield(L, -2, "body");
    lua_newtable(L);
    httpd_req_foreach(r, HTTPD_HEADER, set_pair, L);
    lua_setfield(L, -2, "headers");
    lua_newtable(L);
    httpd_req_foreach(r, HTTPD_QUERY, set_arg, L);
    lua_setfield(L, -2, "query");
}

/* Collect the response's headers as name, value, ..., NULL (strings owned by the table). */
static void collect_headers(lua_State *L, int resp, const char **out) {
    int n = 0;
    if (lua_getfield(L, resp, "headers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2) && n < 2 * MAX_HEADERS) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
                out[n++] = lua_tostring(L, -2);
                out[n++] = lua_tostring(L, -1);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);                                      /* headers stay reachable from resp */
    out[n] = NULL;
}

/* Open REL beneath ROOT one component at a time, following no symlink and refusing "." and
 * "..", so nothing outside ROOT can be reached whatever was planted inside it. */
static int open_beneath(const char *root, const char *rel) {
    char comp[256];
    int dir = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    while (dir >= 0) {
        size_t n = strcspn(rel, "/");
        int last = rel[n] == '\0';
        if (!path_is_component(rel, n)) {
            close(dir);
            errno = ENOENT;
            return -1;
        }
        memcpy(comp, rel, n);
        comp[n] = '\0';
        /* O_NONBLOCK: opening a FIFO planted there would wait for a writer, on the loop */
        int fd = openat(dir, comp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? O_NONBLOCK : O_DIRECTORY));
        close(dir);
        if (last || fd < 0) return fd;
        dir = fd;
        rel += n + 1;
    }
    return -1;
}

static int open_regular(const char *root, const char *rel, struct stat *st) {
    int fd = open_beneath(root, rel);
    if (fd < 0) return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        errno = EISDIR;
        return -1;
    }
    return fd;
}

static int answer_file(lua_State *L, httpd_req *r, int resp, int status, const char **hdrs) {
    struct stat st;
    const char *rel = lua_tostring(L, -1);
    /* read (and check the types of) every field before a descriptor is open */
    lua_Integer want_off = l_optintfield(L, resp, "offset", 0), want_len = l_optintfield(L, resp, "length", -1);
    lua_getfield(L, resp, "root");
    const char *root = lua_tostring(L, -1);
    int fd = root ? open_regular(root, rel, &st) : -1;
    lua_pop(L, 1);
    if (fd < 0) return -1;
    uint64_t size = (uint64_t)st.st_size;
    uint64_t off = want_off < 0 ? UINT64_MAX : (uint64_t)want_off;
    uint64_t len = want_len < 0 ? size - (off < size ? off : size) : (uint64_t)want_len;
    if (off > size || len > size - off) {
        close(fd);
        return -1;
    }
    return httpd_respond_fd(r, status, hdrs, fd, off, len);
}

static const char *const fallback[] = {"Content-Type", "application/json", NULL};
static const char internal[] = "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";

/* answer(request, response): queue the handler's response; run protected, since a field of
 * the wrong type raises. */
static int answer(lua_State *L) {
    httpd_req *r = lua_touserdata(L, 1);
    const int resp = 2;
    const char *hdrs[2 * MAX_HEADERS + 1];
    if (!lua_istable(L, resp)) {
        httpd_respond(r, 500, fallback, internal, sizeof internal - 1);
        return 0;
    }
    lua_Integer code = l_optintfield(L, resp, "status", 200);
    int status = code >= 100 && code <= 999 ? (int)code : 0;     /* 0: answered 500 below */
    collect_headers(L, resp, hdrs);
    if (lua_getfield(L, resp, "stream") != LUA_TNIL) {
        httpd_stream **st = luaL_testudata(L, -1, STREAM_MT);
        if (!st || !*st || httpd_respond_stream(r, status, hdrs, *st) != 0)
            httpd_respond(r, 500, fallback, internal, sizeof internal - 1);
        return 0;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, resp, "file") == LUA_TSTRING) {
        static const char gone[] = "{\"error\":{\"code\":\"not_found\",\"message\":\"no such file\"}}";
        if (answer_file(L, r, resp, status, hdrs) != 0) httpd_respond(r, 404, fallback, gone, sizeof gone - 1);
        return 0;
    }
    lua_pop(L, 1);
    size_t len = 0;
    const char *body = "";
    if (lua_getfield(L, resp, "body") == LUA_TSTRING) body = lua_tolstring(L, -1, &len);
    httpd_respond(r, status, hdrs, body, len);
    return 0;
}

/* A request's handler runs as a task, so it may wait (a database that answers later): answered
 * at once when it does not, else deferred and answered when the task ends. The state is a
 * userdata, anchored by the task and, while the request waits for it, by the registry. */
typedef struct lpending {
    lua_State *L;
    httpd_req *r;                /* NULL once the connection is gone (the server stopping) */
    int resp, self;              /* the handler's answer; the registry's anchor while deferred */
    int done, sync;
} lpending;

static void answer_now(lua_State *L, httpd_req *r, int resp_ref) {
    int top = lua_gettop(L);
    lua_pushcfunction(L, answer);
    lua_pushlightuserdata(L, r);
    lua_rawgeti(L, LUA_REGISTRYINDEX, resp_ref);
    if (rt_pcall(L, 2, 0, "http response") != 0) httpd_respond(r, 500, fallback, internal, sizeof internal - 1);
    lua_settop(L, top);
    luaL_unref(L, LUA_REGISTRYINDEX, resp_ref);
}

static int handler_done(lua_State *L, int status, lua_KContext ctx) {
    lpending *p = (lpending *)ctx;
    if (status != LUA_OK && status != LUA_YIELD) {
        log_event(LOG_ERROR, "lua error", "where", "http handler", "error", lua_tostring(L, -1), NULL);
        lua_pushnil(L);
    }
    p->resp = luaL_ref(L, LUA_REGISTRYINDEX);
    p->done = 1;
    if (!p->r) {                                  /* nobody waits for it any more */
        luaL_unref(L, LUA_REGISTRYINDEX, p->resp);
        p->resp = LUA_NOREF;
    } else if (!p->sync) {
        httpd_req_resume(p->r);                   /* on_request answers it, from MHD */
    }
    return 0;
}

/* The task: handler(req) under a traceback handler, then handler_done. */
static int handler_task(lua_State *L) {
    lpending *p = lua_touserdata(L, 3);
    lua_pushcfunction(L, rt_traceback);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    return handler_done(L, lua_pcallk(L, 1, 1, 4, (lua_KContext)p, handler_done), (lua_KContext)p);
}

static void pending_gone(void *data) {
    lpending *p = data;
    p->r = NULL;
    if (p->done) luaL_unref(p->L, LUA_REGISTRYINDEX, p->resp);   /* ended, never answered */
    luaL_unref(p->L, LUA_REGISTRYINDEX, p->self);                /* the task may still hold it */
}

static void on_request(httpd_req *r, void *ud) {
    lserver *s = ud;
    lua_State *L = s->L;
    lpending *p = httpd_req_deferred(r);
    if (p) {                                      /* resumed: the task has ended */
        httpd_req_defer(r, NULL, NULL);
        answer_now(L, r, p->resp);
        luaL_unref(L, LUA_REGISTRYINDEX, p->self);
        return;
    }
    int top = lua_gettop(L);
    lua_pushcfunction(L, handler_task);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn);
    push_request(L, r);
    p = lua_newuserdatauv(L, sizeof *p, 0);
    *p = (lpending){L, r, LUA_NOREF, LUA_NOREF, 0, 1};
    lua_pushvalue(L, -1);
    int anchor = luaL_ref(L, LUA_REGISTRYINDEX);
    rt_spawn(L, 3, 0, "http request", RT_DETACHED);
    lua_settop(L, top);
    p->sync = 0;
    if (p->done) {
        answer_now(L, r, p->resp);
        luaL_unref(L, LUA_REGISTRYINDEX, anchor);
        return;
    }
    p->self = anchor;
    httpd_req_defer(r, p, pending_gone);
}

static lserver *check_server(lua_State *L) {
    return luaL_checkudata(L, 1, SERVER_MT);
}

/* The one release, whichever comes first: close, __close, __gc or the daemon's stop (which
 * must come before the loop closes the server's handles behind its back). */
static void server_release(lserver *s) {
    if (!s->h) return;
    rt_closer_remove(&s->closer);
    httpd_close(s->h);
    s->h = NULL;
    luaL_unref(s->L, LUA_REGISTRYINDEX, s->fn);
    luaL_unref(s->L, LUA_REGISTRYINDEX, s->ref);
    s->fn = s->ref = LUA_NOREF;
}

static void server_stop(rt_closer *c) {
    server_release((lserver *)((char *)c - offsetof(lserver, closer)));
}

static int server_close(lua_State *L) {
    server_release(check_server(L));
    return 0;
}

static int server_port(lua_State *L) {
    lserver *s = check_server(L);
    if (!s->h) return 0;
    lua_pushinteger(L, httpd_port(s->h));
    return 1;
}

/* A whole number in 1..MAX, or an error naming the option. No defaults here: the caller's
 * (lua/assetd/defaults.lua through assetd.http_listen). */
static lua_Integer limit_field(lua_State *L, const char *k, lua_Integer max) {
    lua_Integer v = l_optintfield(L, 1, k, 0);
    if (v < 1 || v > max) luaL_error(L, "option '%s' must be 1..%I", k, max);
    return v;
}

/* http_listen{listen=, handler=, max_body=, max_conns=, per_ip=, timeout=, header_timeout=,
 * body_timeout=, header_limit=}: every field given (assetd.http_listen fills them in). */
static int l_http_listen(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    rt_runtime *rt = rt_get(L);
    struct httpd_config cfg = {
        .listen = l_optstrfield(L, 1, "listen", NULL),
        .max_body = (size_t)limit_field(L, "max_body", (lua_Integer)1 << 40),
        .max_conns = (unsigned)limit_field(L, "max_conns", 65536),
        .per_ip = (unsigned)limit_field(L, "per_ip", 65536),
        .timeout_s = (unsigned)limit_field(L, "timeout", 86400),
        .header_timeout_s = (unsigned)limit_field(L, "header_timeout", 86400),
        .body_timeout_s = (unsigned)limit_field(L, "body_timeout", 86400),
        .conn_memory = (size_t)limit_field(L, "header_limit", (lua_Integer)1 << 30),
        .handler = on_request,
    };
    luaL_argcheck(L, cfg.listen != NULL, 1, "listen must be HOST:PORT");
    luaL_argcheck(L, lua_getfield(L, 1, "handler") == LUA_TFUNCTION, 1, "handler must be a function");
    /* its handles would outlive the stop's close of the loop's handles, and the loop would
     * never end */
    if (rt->stopping) return rt_fail(L, "canceled", "http_listen: the daemon is stopping");
    lserver *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    s->fn = s->ref = LUA_NOREF;
    luaL_setmetatable(L, SERVER_MT);
    lua_State *main = rt->L;
    s->L = main;
    cfg.ud = s;
    char err[256];
    if (httpd_start(rt->loop, &cfg, &s->h, err, sizeof err) != 0) return rt_fail(L, "listen", "%s", err);
    lua_pushvalue(L, -2);
    s->fn = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    rt_closer_add(rt, &s->closer, server_stop);
    return 1;
}

/* ---- streams: a body written after the answer began ------------------------------------ */

static httpd_stream *check_stream(lua_State *L) {
    httpd_stream **st = luaL_checkudata(L, 1, STREAM_MT);
    if (!*st) luaL_argerror(L, 1, "stream is released");
    return *st;
}

/* http_stream([cap]) -> a stream to answer with ({stream = s}); CAP (default 1 MiB) bounds
 * what a client that stops reading may leave buffered. */
static int l_http_stream(lua_State *L) {
    lua_Integer cap = luaL_optinteger(L, 1, 1 << 20);
    luaL_argcheck(L, cap >= 1 && cap <= (lua_Integer)1 << 30, 1, "cap must be 1..2^30 bytes");
    httpd_stream **st = lua_newuserdatauv(L, sizeof *st, 0);
    *st = NULL;
    luaL_setmetatable(L, STREAM_MT);
    *st = httpd_stream_new((size_t)cap);
    if (!*st) return luaL_error(L, "http_stream: out of memory");
    return 1;
}

/* s:write(text) -> true, or nil, err once the stream is over (its client gone, ended, or too
 * far behind): the caller forgets it then. */
static int stream_write(lua_State *L) {
    httpd_stream *st = check_stream(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (httpd_stream_write(st, p, n) != 0) return rt_fail(L, "canceled", "the stream is closed: its client went, it ended, or it fell too far behind");
    lua_pushboolean(L, 1);
    return 1;
}

static int stream_is_open(lua_State *L) {
    lua_pushboolean(L, httpd_stream_is_open(check_stream(L)));
    return 1;
}

static int stream_close(lua_State *L) {
    httpd_stream **st = luaL_checkudata(L, 1, STREAM_MT);
    if (*st) httpd_stream_end(*st);
    return 0;
}

/* the owner's reference goes; an answer still sending keeps the memory until it is done */
static int stream_gc(lua_State *L) {
    httpd_stream **st = luaL_checkudata(L, 1, STREAM_MT);
    httpd_stream_release(*st);
    *st = NULL;
    return 0;
}

/* file_info(root, rel) -> {size=, mtime=, inode=} for a regular file beneath ROOT reached
 * without following a symlink. */
static int l_file_info(lua_State *L) {
    const char *root = luaL_checkstring(L, 1), *rel = luaL_checkstring(L, 2);
    struct stat st;
    int fd = open_regular(root, rel, &st);
    if (fd < 0) return rt_fail(L, "not_found", "%s: %s", rel, strerror(errno));
    close(fd);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    lua_pushinteger(L, (lua_Integer)st.st_ino);
    lua_setfield(L, -2, "inode");
    return 1;
}

/* probe_write(dir) -> true, or nil, err (category "disk", naming the errno): a small file
 * written, fsynced and removed in DIR, so "usable" means a commit there would work. The name
 * is new (O_EXCL with the pid and a counter) and O_NOFOLLOW: whatever was planted in DIR, a
 * link is never followed and no existing file is touched. O_TMPFILE would need no name, but
 * not every filesystem has it, and it would not prove a name can be made there. */
static int l_probe_write(lua_State *L) {
    static unsigned seq;
    const char *dir = luaL_checkstring(L, 1);
    char name[64];
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return rt_fail(L, "disk", "%s: %s (%s)", dir, strerror(errno), strerrorname_np(errno));
    int fd = -1;
    /* a name taken (planted there, say) is passed over, a few times */
    for (int tries = 0; fd < 0 && tries < 8; tries++) {
        snprintf(name, sizeof name, ".assetd-probe-%ld-%u", (long)getpid(), ++seq);
        fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) {
        errno = 0;
        if (write(fd, "ok\n", 3) != 3 || fsync(fd) != 0) err = errno ? errno : EIO;
        close(fd);
        unlinkat(dfd, name, 0);
    }
    close(dfd);
    if (err) return rt_fail(L, "disk", "%s is not writable: %s (%s)", dir, strerror(err), strerrorname_np(err));
    lua_pushboolean(L, 1);
    return 1;
}

void l_httpd_open(lua_State *L) {
    static const luaL_Reg methods[] = {{"close", server_close}, {"port", server_port}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", server_close}, {"__close", server_close}, {NULL, NULL}};
    static const luaL_Reg fns[] = {{"http_listen", l_http_listen}, {"http_stream", l_http_stream}, {"file_info", l_file_info},
                                     {"probe_write", l_probe_write}, {NULL, NULL}};
    static const luaL_Reg smethods[] = {{"write", stream_write}, {"close", stream_close},
                                        {"is_open", stream_is_open}, {NULL, NULL}};
    static const luaL_Reg smeta[] = {{"__gc", stream_gc}, {"__close", stream_close}, {NULL, NULL}};
    l_newclass(L, SERVER_MT, methods, meta);
    l_newclass(L, STREAM_MT, smethods, smeta);
    luaL_setfuncs(L, fns, 0);
}
