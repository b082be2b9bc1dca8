/* l_fetch.c: `assetd.fetch{...}` (downloads, calls and signed uploads) and the engine's limits as Lua functions. A fetch yields its
 * task; the engine's completion callback builds the response (or the error value) on the
 * task's stack and resumes it. Options are checked here, once, with errors naming the field. */
#include "fetch.h"
#include "formats.h"
#include "lbind.h"
#include "lmodules.h"
#include "log.h"
#include "runtime.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct lfetch {
    rt_wait wait;
    rt_task *task;
    fetch_xfer *x;
    int progress_ref;
} lfetch;

static char *dup_field(lua_State *L, const char *s, size_t len) {
    char *p = malloc(len + 1);
    if (!p) luaL_error(L, "out of memory");
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static int has_crlf(const char *s) { return strpbrk(s, "\r\n") != NULL; }

static void add_header(lua_State *L, fetch_xfer *x, const char *name, const char *value) {
    if (has_crlf(name) || has_crlf(value) || strchr(name, ':') || !*name)
        luaL_error(L, "fetch: invalid header %s (names may not be empty or hold ':', CR or LF)", name);
    lua_pushfstring(L, "%s: %s", name, value);
    fetch_request *r = fetch_xfer_request(x);
    struct curl_slist *l = curl_slist_append(r->headers, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (!l) luaL_error(L, "out of memory");
    r->headers = l;
}

static void read_headers(lua_State *L, fetch_xfer *x) {
    if (lua_getfield(L, 1, "headers") == LUA_TNIL) { lua_pop(L, 1); return; }
    luaL_argcheck(L, lua_istable(L, -1), 1, "option 'headers' must be a table");
    for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
            luaL_error(L, "fetch: option 'headers' must map header names to strings");
        add_header(L, x, lua_tostring(L, -2), lua_tostring(L, -1));
    }
    lua_pop(L, 1);
}

static long ms_field(lua_State *L, const char *k) {
    double v = l_optnumfield(L, 1, k, 0);
    if (v < 0 || v != v) luaL_error(L, "fetch: option '%s' must be >= 0 seconds", k);
    return (long)ceil((v < 1e9 ? v : 1e9) * 1000.0);     /* no overflow in the cast */
}

static void read_low_speed(lua_State *L, fetch_xfer *x) {
    if (lua_getfield(L, 1, "low_speed") == LUA_TNIL) { lua_pop(L, 1); return; }
    luaL_argcheck(L, lua_istable(L, -1), 1, "option 'low_speed' must be {bytes, seconds}");
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (!lua_isinteger(L, -2) || !lua_isinteger(L, -1))
        luaL_error(L, "fetch: option 'low_speed' must be {bytes, seconds} (integers)");
    fetch_xfer_request(x)->low_speed_bytes = (long)lua_tointeger(L, -2);
    fetch_xfer_request(x)->low_speed_secs = (long)lua_tointeger(L, -1);
    lua_pop(L, 3);
}

/* ---- check = {name =, head = {{offset, bytes}, ...}, tail =, structure =} ------------------
 * A signature as data (formats.lua's, by variant): the engine knows no formats, only bytes at
 * offsets and its named structural mechanisms. */

/* A string field of the table at T: NULL when absent, else 1..MAX bytes into *LEN. */
static const char *sig_bytes(lua_State *L, int t, const char *k, size_t max, size_t *len) {
    if (lua_getfield(L, t, k) == LUA_TNIL) { lua_pop(L, 1); return NULL; }
    const char *b = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
    if (!b || *len == 0 || *len > max)
        luaL_error(L, "fetch: option 'check.%s' must be a string of 1..%d bytes", k, (int)max);
    lua_pop(L, 1);                      /* still referenced by the check table */
    return b;
}

/* head[I] (on the stack top) = {offset, bytes} into H. */
static void sig_head_entry(lua_State *L, lua_Integer i, formats_bytes *h) {
    if (!lua_istable(L, -1)) luaL_error(L, "fetch: option 'check.head[%d]' must be {offset, bytes}", (int)i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    size_t len = 0;
    const char *b = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 0)
        luaL_error(L, "fetch: option 'check.head[%d]': the offset must be a non-negative integer", (int)i);
    if (!b || len == 0 || len > FORMATS_BYTES_MAX)
        luaL_error(L, "fetch: option 'check.head[%d]': the bytes must be a string of 1..%d bytes", (int)i,
                   FORMATS_BYTES_MAX);
    h->offset = (int64_t)lua_tointeger(L, -2);
    h->len = len;
    memcpy(h->bytes, b, len);
    lua_pop(L, 2);
}

static void sig_head(lua_State *L, int t, formats_sig *sig) {
    if (lua_getfield(L, t, "head") == LUA_TNIL) { lua_pop(L, 1); return; }
    if (!lua_istable(L, -1)) luaL_error(L, "fetch: option 'check.head' must be a list of {offset, bytes}");
    lua_Integer n = luaL_len(L, -1);
    if (n > FORMATS_HEAD_MAX)
        luaL_error(L, "fetch: option 'check.head' has %d entries, at most %d", (int)n, FORMATS_HEAD_MAX);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        sig_head_entry(L, i, &sig->head[sig->nhead++]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void sig_structure(lua_State *L, int t, formats_sig *sig) {
    const char *s = l_optstrfield(L, t, "structure", NULL);
    if (!s || formats_structure_by_name(s, &sig->structure) == 0) return;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; formats_structures[i]; i++) {
        if (i > 1) luaL_addstring(&b, ", ");
        luaL_addstring(&b, formats_structures[i]);
    }
    luaL_pushresult(&b);
    luaL_error(L, "fetch: option 'check.structure' must be one of %s, not \"%s\"", lua_tostring(L, -1), s);
}

/* check = the signature table (formats.check(variant) gives a variant's) into SIG. */
static void read_check(lua_State *L, formats_sig *sig) {
    int t = lua_gettop(L);
    if (!lua_istable(L, t))
        luaL_error(L, "fetch: option 'check' must be a signature table {name =, head =, tail =, structure =}, "
                   "not a %s; formats.check(variant) gives a variant's", luaL_typename(L, t));
    const char *name = l_optstrfield(L, t, "name", "");
    size_t len = strlen(name);          /* only for messages: a long one is cut, not refused */
    memcpy(sig->name, name, len < FORMATS_NAME_MAX ? len : FORMATS_NAME_MAX - 1);  /* came zeroed */
    sig_head(L, t, sig);
    const char *tail = sig_bytes(L, t, "tail", FORMATS_BYTES_MAX, &len);
    if (tail) { memcpy(sig->tail, tail, len); sig->tail_len = len; }
    sig_structure(L, t, sig);
}

/* upload = {path =, offset = 0, length = the rest}: the request body is that range of the file. */
static void read_upload(lua_State *L, fetch_xfer *x) {
    fetch_request *r = fetch_xfer_request(x);
    if (lua_getfield(L, 1, "upload") == LUA_TNIL) { lua_pop(L, 1); return; }
    luaL_argcheck(L, lua_istable(L, -1), 1, "option 'upload' must be {path =, offset =, length =}");
    int t = lua_gettop(L);
    const char *path = l_optstrfield(L, t, "path", NULL);
    if (!path || !*path) luaL_error(L, "fetch: option 'upload' needs 'path' (a string)");
    lua_Integer off = l_optintfield(L, t, "offset", 0);
    lua_Integer len = l_optintfield(L, t, "length", -1);
    if (off < 0) luaL_error(L, "fetch: option 'upload.offset' must be >= 0");
    if (len < 0) {                 /* the rest of the file, as it is now */
        struct stat st;
        len = stat(path, &st) == 0 && st.st_size >= off ? (lua_Integer)(st.st_size - off) : 0;
    }
    if (r->body || r->path) luaL_error(L, "fetch: option 'upload' takes neither 'body' nor 'to' (its answer goes to memory)");
    r->upload_path = dup_field(L, path, strlen(path));
    r->upload_offset = off;
    r->upload_length = len;
    lua_pop(L, 1);
}

/* A string from the environment, "" when unset. */
static const char *env_or_empty(const char *name) {
    const char *v = getenv(name);
    return v ? v : "";
}

/* aws_sigv4 = "aws:amz:REGION:SERVICE": libcurl signs the request with AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY (and sends AWS_SESSION_TOKEN as x-amz-security-token), read here from
 * the environment so the secret never passes through Lua, where a hook, the REPL or an error
 * could show it. Returns NULL, or the name of a credential that is not set. */
static const char *read_sigv4(lua_State *L, fetch_xfer *x) {
    const char *sig = l_optstrfield(L, 1, "aws_sigv4", NULL);
    if (!sig) return NULL;
    if (!*sig || has_crlf(sig)) luaL_error(L, "fetch: option 'aws_sigv4' must be provider1[:provider2[:region[:service]]]");
    fetch_request *r = fetch_xfer_request(x);
    r->aws_sigv4 = dup_field(L, sig, strlen(sig));
    const char *key = env_or_empty("AWS_ACCESS_KEY_ID"), *secret = env_or_empty("AWS_SECRET_ACCESS_KEY");
    if (!*key) return "AWS_ACCESS_KEY_ID";
    if (!*secret) return "AWS_SECRET_ACCESS_KEY";
    r->aws_key = dup_field(L, key, strlen(key));
    r->aws_secret = dup_field(L, secret, strlen(secret));
    const char *token = env_or_empty("AWS_SESSION_TOKEN");
    if (*token) add_header(L, x, "x-amz-security-token", token);
    return NULL;
}

/* Fill X from the options table at index 1; raises on a programmer error. */
static void read_request(lua_State *L, fetch_xfer *x) {
    size_t len;
    fetch_request *r = fetch_xfer_request(x);
    lua_getfield(L, 1, "url");
    const char *url = lua_tolstring(L, -1, &len);
    if (!url || len == 0) luaL_error(L, "fetch: option 'url' is required (a string)");
    if (strlen(url) != len || has_crlf(url)) luaL_error(L, "fetch: option 'url' holds NUL, CR or LF");
    r->url = dup_field(L, url, len);
    lua_pop(L, 1);
    const char *method = l_optstrfield(L, 1, "method", NULL);
    if (method) {
        for (const char *p = method; *p; p++)
            if (*p < 'A' || *p > 'Z') luaL_error(L, "fetch: option 'method' must be an upper-case token");
        r->method = dup_field(L, method, strlen(method));
    }
    if (lua_getfield(L, 1, "body") != LUA_TNIL) {
        const char *b = lua_tolstring(L, -1, &len);
        if (!b || lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "fetch: option 'body' must be a string");
        r->body = dup_field(L, b, len);
        r->body_len = len;
    }
    lua_pop(L, 1);
    const char *to = l_optstrfield(L, 1, "to", NULL);
    const char *sink = l_optstrfield(L, 1, "sink", NULL);
    if (sink && strcmp(sink, "memory") != 0) luaL_error(L, "fetch: option 'sink' must be \"memory\"");
    if (to && sink) luaL_error(L, "fetch: give either 'to' or 'sink', not both");
    r->to_memory = to == NULL;
    if (to) r->path = dup_field(L, to, strlen(to));
    r->max_bytes = (int64_t)l_optintfield(L, 1, "max_bytes", 0);
    r->tag = (int64_t)l_optintfield(L, 1, "tag", 0);
    if (lua_getfield(L, 1, "check") != LUA_TNIL) {
        if (!to) luaL_error(L, "fetch: option 'check' needs 'to'");
        read_check(L, &r->sig);
        r->check = 1;
    }
    lua_pop(L, 1);
    r->expect_size = (int64_t)l_optintfield(L, 1, "expect_size", -1);
    const char *exists = l_optstrfield(L, 1, "exists", NULL);
    if (exists && strcmp(exists, "skip") != 0 && strcmp(exists, "error") != 0)
        luaL_error(L, "fetch: option 'exists' must be \"error\" or \"skip\"");
    if (exists && !to) luaL_error(L, "fetch: option 'exists' needs 'to'");
    r->exists_skip = exists && strcmp(exists, "skip") == 0;
    lua_getfield(L, 1, "resume");
    r->resume = lua_toboolean(L, -1);
    lua_getfield(L, 1, "direct");               /* the fast durable path unless told otherwise */
    r->direct = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_getfield(L, 1, "deny_private");
    r->deny_private = lua_toboolean(L, -1);
    lua_pop(L, 3);
    r->deadline = l_optnumfield(L, 1, "deadline", INFINITY);
    r->timeout_ms = ms_field(L, "timeout");
    r->connect_timeout_ms = ms_field(L, "connect_timeout");
    read_low_speed(L, x);
    read_headers(L, x);
    read_upload(L, x);
}

static void push_headers(lua_State *L, const fetch_xfer *x) {
    lua_newtable(L);
    const char *n, *v;
    for (size_t off = 0; (off = fetch_header_next(x, off, &n, &v)) != 0;) {
        if (lua_getfield(L, -1, n) == LUA_TSTRING) {   /* repeated header: join as HTTP does */
            lua_pushfstring(L, "%s, %s", lua_tostring(L, -1), v);
            lua_remove(L, -2);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, v);
        }
        lua_setfield(L, -2, n);
    }
}

static void set_num(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, int64_t v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

/* An error body goes to hooks, job errors and Notion: redacted like the message (as text: what
 * follows a NUL byte is dropped). */
static void push_error_body(lua_State *L, const char *body) {
    char *red = log_redact(body);
    if (!red) return;                     /* no memory: no body, rather than a raise here */
    lua_pushstring(L, red);
    free(red);
    lua_setfield(L, -2, "body");
}

static int push_result(lua_State *L, fetch_xfer *x) {
    const fetch_result *r = fetch_xfer_result(x);
    size_t len;
    const char *body = fetch_xfer_body(x, &len);
    if (r->category) {
        lua_pushnil(L);
        rt_push_error(L, r->category, "%s", r->message);
        if (r->status) set_int(L, "status", r->status);
        if (r->cause) {
            lua_pushstring(L, r->cause);
            lua_setfield(L, -2, "cause");
        }
        if (r->retry_after >= 0) set_num(L, "retry_after", r->retry_after);
        if (r->category[0] == 'h' && len) push_error_body(L, body);
        return 2;
    }
    lua_createtable(L, 0, 10);
    if (r->skipped) {                     /* no request was made: no status */
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "skipped");
    } else {
        set_int(L, "status", r->status);
    }
    push_headers(L, x);
    lua_setfield(L, -2, "headers");
    const fetch_request *req = fetch_xfer_request(x);
    if (req->to_memory) {
        lua_pushlstring(L, body ? body : "", len);
        lua_setfield(L, -2, "body");
    } else {
        lua_pushstring(L, req->path);
        lua_setfield(L, -2, "path");
    }
    set_int(L, "bytes", r->bytes);
    set_int(L, "resumed_from", r->resumed_from);
    lua_pushstring(L, r->sha256);
    lua_setfield(L, -2, "sha256");
    set_num(L, "elapsed", r->elapsed);
    if (req->upload_path) set_int(L, "uploaded", r->uploaded);
    lua_pushstring(L, r->http_version);
    lua_setfield(L, -2, "http_version");
    return 1;
}

static void on_done(fetch_xfer *x, void *ud) {
    lfetch *f = ud;
    rt_runtime *rt = rt_get(rt_task_thread(f->task));
    luaL_unref(rt->L, LUA_REGISTRYINDEX, f->progress_ref);
    lua_State *co = rt_task_thread(f->task);
    int n = push_result(co, x);
    rt_task *t = f->task;
    free(f);
    rt_resume(t, n);
}

static void on_progress(fetch_xfer *x, void *ud) {
    lfetch *f = ud;
    if (f->progress_ref == LUA_NOREF) return;
    lua_State *L = rt_get(rt_task_thread(f->task))->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->progress_ref);
    const fetch_result *r = fetch_xfer_result(x);
    lua_pushinteger(L, (lua_Integer)r->bytes);
    if (r->total >= 0) lua_pushinteger(L, (lua_Integer)r->total);
    else lua_pushnil(L);
    rt_pcall(L, 2, 0, "fetch on_progress");
}

static void lfetch_cancel(rt_wait *w) {
    lfetch *f = (lfetch *)w;
    fetch_cancel(f->x);
}

/* Until it is submitted, a transfer belongs to a userdata box, so an option error raised
 * half-way through reading frees it through __gc. */
static int box_gc(lua_State *L) {
    fetch_xfer **box = lua_touserdata(L, 1);
    fetch_xfer_free(*box);
    *box = NULL;
    return 0;
}

static fetch_xfer *new_boxed_xfer(lua_State *L) {
    fetch_xfer **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (luaL_newmetatable(L, "assetd.fetchbox")) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (!(*box = fetch_xfer_new())) luaL_error(L, "out of memory");
    return *box;
}

static int l_fetch(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    rt_task *task = rt_check_task(L, "assetd.fetch");
    rt_runtime *rt = rt_get(L);
    fetch_xfer *x = new_boxed_xfer(L);
    int box = lua_gettop(L);
    read_request(L, x);
    const char *unset = read_sigv4(L, x);
    if (unset)           /* a setting that can never work: no retry policy retries it */
        return rt_fail(L, "config", "fetch: %s is not set; the request cannot be signed", unset);
    int ty = lua_getfield(L, 1, "on_progress");
    luaL_argcheck(L, ty == LUA_TNIL || ty == LUA_TFUNCTION, 1, "option 'on_progress' must be a function");
    lfetch *f = calloc(1, sizeof *f);
    if (!f) return luaL_error(L, "out of memory");
    f->task = task;
    f->x = x;
    f->progress_ref = ty == LUA_TNIL ? (lua_pop(L, 1), LUA_NOREF) : luaL_ref(L, LUA_REGISTRYINDEX);
    f->wait.cancel = lfetch_cancel;
    /* the stop frees the engine (rt->fetch is NULL from then on) */
    int err = rt->fetch ? fetch_submit(rt->fetch, x, on_done, on_progress, f) : UV_ECANCELED;
    if (err) {
        luaL_unref(L, LUA_REGISTRYINDEX, f->progress_ref);
        free(f);
        /* a URL that can never work is "invalid", so no retry policy retries it */
        return rt_fail(L, err == UV_ECANCELED ? "canceled" : err == UV_EINVAL ? "invalid" : "network",
                       "fetch: %s", err == UV_EINVAL ? "the url has no host name" : uv_strerror(err));
    }
    *(fetch_xfer **)lua_touserdata(L, box) = NULL;    /* the engine owns it now */
    return rt_wait_yield(L, task, &f->wait);
}

static int l_fetch_limits(lua_State *L) {
    rt_runtime *rt = rt_get(L);
    if (!rt->fetch) return rt_fail(L, "canceled", "fetch_limits: the daemon is stopping");
    fetch_limits lim = fetch_get_limits(rt->fetch);
    if (lua_istable(L, 1)) {
        double a = l_optnumfield(L, 1, "max_active", lim.max_active);
        double h = l_optnumfield(L, 1, "per_host", lim.per_host);
        double b = l_optnumfield(L, 1, "max_bytes_per_sec", lim.max_bytes_per_sec);
        double u = l_optnumfield(L, 1, "max_uploads", lim.max_uploads);
        luaL_argcheck(L, a >= 1 && a <= 100000, 1, "max_active must be 1..100000");
        luaL_argcheck(L, h >= 0 && h <= 100000, 1, "per_host must be 0..100000 (0: no limit)");
        luaL_argcheck(L, b >= 0, 1, "max_bytes_per_sec must be >= 0 (0: no cap)");
        luaL_argcheck(L, u >= 1 && u <= 100000, 1, "max_uploads must be 1..100000");
        const char *order = l_optstrfield(L, 1, "order", lim.fifo ? "fifo" : "edf");
        luaL_argcheck(L, !strcmp(order, "edf") || !strcmp(order, "fifo"), 1, "order must be \"edf\" or \"fifo\"");
        lim = (fetch_limits){(unsigned)a, (unsigned)h, b, (unsigned)u, !strcmp(order, "fifo")};
        fetch_set_limits(rt->fetch, &lim);
    }
    unsigned active, queued;
    fetch_stats(rt->fetch, &active, &queued);
    lua_createtable(L, 0, 7);
    set_int(L, "max_active", lim.max_active);
    set_int(L, "per_host", lim.per_host);
    set_num(L, "max_bytes_per_sec", lim.max_bytes_per_sec);
    set_int(L, "max_uploads", lim.max_uploads);
    lua_pushstring(L, lim.fifo ? "fifo" : "edf");
    lua_setfield(L, -2, "order");
    set_int(L, "active", active);
    set_int(L, "queued", queued);
    return 1;
}

static void push_download(const fetch_info *i, void *ud) {
    lua_State *L = ud;
    lua_createtable(L, 0, 6);
    set_int(L, "id", (int64_t)i->id);
    lua_pushstring(L, i->state);
    lua_setfield(L, -2, "state");
    set_num(L, "deadline", i->deadline);
    set_int(L, "bytes", i->bytes);
    set_int(L, "total", i->total);
    lua_pushboolean(L, i->holdable);
    lua_setfield(L, -2, "holdable");
    if (i->tag) set_int(L, "tag", i->tag);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* downloads() -> {{id, state, deadline, bytes, total, holdable, tag}, ...}: the file downloads the
 * engine runs, queues or holds, for the scheduling policy; {} once the daemon stops. */
static int l_downloads(lua_State *L) {
    rt_runtime *rt = rt_get(L);
    lua_newtable(L);
    if (rt->fetch) fetch_each_download(rt->fetch, push_download, L);
    return 1;
}

/* hold_download(id, on) -> whether the download is now held (on) or released (not on); false
 * for one that is gone, finishing, or cannot be stopped without losing its bytes. */
static int l_hold_download(lua_State *L) {
    rt_runtime *rt = rt_get(L);
    lua_Integer id = luaL_checkinteger(L, 1);
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    lua_pushboolean(L, rt->fetch && id > 0 && fetch_hold(rt->fetch, (uint64_t)id, lua_toboolean(L, 2)) == 0);
    return 1;
}

/* private_address(ip) -> whether the IP literal is one deny_private refuses; nil for anything
 * that is not an IP literal (a name is judged when it is resolved, at connect time). */
static int l_private_address(lua_State *L) {
    const char *ip = luaL_checkstring(L, 1);
    unsigned char a[16];
    int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(family, ip, a) != 1) lua_pushnil(L);
    else lua_pushboolean(L, fetch_private_address(family, a));
    return 1;
}

void l_fetch_open(lua_State *L) {
    lua_pushcfunction(L, l_fetch);
    lua_setfield(L, -2, "fetch");
    lua_pushcfunction(L, l_fetch_limits);
    lua_setfield(L, -2, "fetch_limits");
    lua_pushcfunction(L, l_downloads);
    lua_setfield(L, -2, "downloads");
    lua_pushcfunction(L, l_hold_download);
    lua_setfield(L, -2, "hold_download");
    lua_pushcfunction(L, l_private_address);
    lua_setfield(L, -2, "private_address");
}
