/* l_filehash.c: `assetd.hash_file(path, part_size)`: the digests of a file and of its parts
 * (filehash.c), computed on libuv's thread pool while the task waits, so hashing a large
 * asset never holds the loop. */
#include "filehash.h"
#include "lbind.h"
#include "lmodules.h"
#include "runtime.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

typedef struct lhash {
    rt_wait wait;
    rt_task *task;
    uv_work_t work;
    char *path;
    int64_t part_size;
    int err, canceled;
    filehash h;
} lhash;

static void hash_work(uv_work_t *w) {
    lhash *q = w->data;
    q->err = filehash_file(q->path, q->part_size, &q->h);
}

static void set_str(lua_State *L, const char *k, const char *v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, int64_t v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static int push_hash(lua_State *L, lhash *q) {
    if (q->canceled) return rt_fail(L, "canceled", "hash_file %s: canceled", q->path);
    if (q->err) return rt_fail(L, "disk", "hash_file %s: %s", q->path, strerror(q->err));
    lua_createtable(L, 0, 4);
    set_int(L, "size", q->h.size);
    set_int(L, "part_size", q->h.part_size);
    set_str(L, "md5", q->h.md5);
    lua_createtable(L, (int)q->h.nparts, 0);
    for (size_t i = 0; i < q->h.nparts; i++) {
        const filehash_part *p = &q->h.parts[i];
        lua_createtable(L, 0, 4);
        set_int(L, "offset", p->offset);
        set_int(L, "length", p->length);
        set_str(L, "sha256", p->sha256);
        set_str(L, "md5", p->md5);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "parts");
    return 1;
}

static void hash_done(uv_work_t *w, int status) {
    lhash *q = w->data;
    if (status != 0) q->canceled = 1;
    lua_State *co = rt_task_thread(q->task);
    int n = push_hash(co, q);
    rt_task *t = q->task;
    filehash_free(&q->h);
    free(q->path);
    free(q);
    rt_resume(t, n);
}

/* The work may be running already: then it ends on its own and its result is dropped. */
static void hash_cancel(rt_wait *w) {
    lhash *q = (lhash *)w;
    q->canceled = 1;
    uv_cancel((uv_req_t *)&q->work);
}

static int l_hash_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_Integer part = luaL_checkinteger(L, 2);
    luaL_argcheck(L, part > 0, 2, "part_size must be > 0");
    rt_task *task = rt_check_task(L, "assetd.hash_file");
    lhash *q = calloc(1, sizeof *q);
    if (!q || !(q->path = strdup(path))) { free(q); return luaL_error(L, "out of memory"); }
    q->task = task;
    q->part_size = part;
    q->wait.cancel = hash_cancel;
    q->work.data = q;
    int rc = uv_queue_work(rt_get(L)->loop, &q->work, hash_work, hash_done);
    if (rc != 0) {
        free(q->path);
        free(q);
        return rt_fail(L, "disk", "hash_file %s: %s", path, uv_strerror(rc));
    }
    return rt_wait_yield(L, task, &q->wait);
}

void l_filehash_open(lua_State *L) {
    lua_pushcfunction(L, l_hash_file);
    lua_setfield(L, -2, "hash_file");
}
