/* l_jobdb.c: `assetd.jobdb`, the job store as Lua sees it. `jobs.open(dir)` gives a store
 * object; jobs come and go as plain tables with the original design's camelCase names.
 * Database failures return nil, err; an illegal transition is an error value too (category
 * "state"), since a caller racing another task may meet it at run time. */
#include "clock.h"
#include "jobdb.h"
#include "lbind.h"
#include "lmodules.h"
#include "runtime.h"
#include "store.h"

#include <lauxlib.h>
#include <string.h>

#define JOBS_MT "assetd.jobdb"

typedef struct ljobs {
    jobdb *db;
} ljobs;

static ljobs *check_store(lua_State *L) {
    ljobs *s = luaL_checkudata(L, 1, JOBS_MT);
    if (!s->db) luaL_argerror(L, 1, "job store is closed");
    return s;
}

static int fail_db(lua_State *L, ljobs *s, int code) {
    static const char *const cat[] = {"ok", "not_found", "state", "invalid", "database"};
    return rt_fail(L, cat[code], "%s", jobdb_errmsg(s->db));
}

static void set_str(lua_State *L, const char *k, const char *v) {
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_time(lua_State *L, const char *k, double v) {
    if (v <= 0) return;
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void push_job(lua_State *L, const jobdb_job *j) {
    lua_createtable(L, 0, 16);
    lua_pushinteger(L, (lua_Integer)j->id);
    lua_setfield(L, -2, "id");
    set_str(L, "notionPageId", j->page_id);
    set_str(L, "soraVideoId", j->video_id);
    set_str(L, "batchId", j->batch_id);
    set_str(L, "provider", j->provider);
    set_str(L, "status", jobdb_state_name(j->state));
    set_time(L, "completedAt", j->completed_at);
    set_time(L, "expiresAt", j->expires_at);
    set_time(L, "createdAt", j->created_at);
    set_time(L, "updatedAt", j->updated_at);
    lua_pushinteger(L, (lua_Integer)j->version);
    lua_setfield(L, -2, "version");
    lua_pushinteger(L, (lua_Integer)j->retry_count);
    lua_setfield(L, -2, "retryCount");
    set_str(L, "error", j->error);
    set_str(L, "data", j->data);
}

/* An id field of the table at T, checked like every id assetd stores (NUL included). */
static void id_field(lua_State *L, int t, const char *k, char *dst, size_t cap, int required) {
    size_t len = 0;
    lua_getfield(L, t, k);
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!v && !required && lua_isnil(L, -1)) { dst[0] = '\0'; lua_pop(L, 1); return; }
    if (!v || len >= cap || strlen(v) != len || !store_valid_id(v))
        luaL_error(L, "jobs: field '%s' must match ^[A-Za-z0-9_-]{1,128}$", k);
    memcpy(dst, v, len + 1);
    lua_pop(L, 1);
}

/* The provider of a job that names none is defaults.lua's (pgstore.lua reads the same field):
 * the policy is written once, in Lua, and the C store stores what it is given. */
static const char *default_provider(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "assetd.defaults");
    lua_call(L, 1, 1);
    if (lua_getfield(L, -1, "provider") != LUA_TSTRING) luaL_error(L, "jobs: assetd.defaults has no provider");
    const char *p = lua_tostring(L, -1);
    lua_pop(L, 2);            /* the string stays alive in the loaded defaults table */
    return p;
}

static int l_create(lua_State *L) {
    ljobs *s = check_store(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    jobdb_job in, out;
    memset(&in, 0, sizeof in);
    id_field(L, 2, "notionPageId", in.page_id, sizeof in.page_id, 1);
    id_field(L, 2, "soraVideoId", in.video_id, sizeof in.video_id, 1);
    id_field(L, 2, "batchId", in.batch_id, sizeof in.batch_id, 1);
    const char *provider = l_optstrfield(L, 2, "provider", NULL);
    if (!provider) provider = default_provider(L);
    luaL_argcheck(L, strlen(provider) < sizeof in.provider, 2, "provider name too long");
    strcpy(in.provider, provider);
    in.completed_at = l_optnumfield(L, 2, "completedAt", 0);
    in.expires_at = l_optnumfield(L, 2, "expiresAt", 0);
    in.data = (char *)l_optstrfield(L, 2, "data", NULL);
    const char *st = l_optstrfield(L, 2, "status", in.completed_at > 0 ? "pending" : "waiting");
    if (jobdb_state_parse(st, &in.state) != 0) luaL_error(L, "jobs: unknown status '%s'", st);
    int created, rc = jobdb_create(s->db, &in, &out, &created);
    if (rc) return fail_db(L, s, rc);
    push_job(L, &out);
    jobdb_job_clear(&out);
    lua_pushboolean(L, created);
    return 2;
}

static int l_get(lua_State *L) {
    ljobs *s = check_store(L);
    jobdb_job j;
    /* only a string: callers pass gsub's two results, whose count must not become an id */
    const char *video = lua_type(L, 3) == LUA_TSTRING ? lua_tostring(L, 3) : NULL;
    int rc = lua_isinteger(L, 2) ? jobdb_get(s->db, lua_tointeger(L, 2), &j)
           : video ? jobdb_get_by_key(s->db, luaL_checkstring(L, 2), video, &j)
                   : jobdb_get_by_page(s->db, luaL_checkstring(L, 2), &j);
    if (rc) return fail_db(L, s, rc);
    push_job(L, &j);
    jobdb_job_clear(&j);
    return 1;
}

static int64_t job_id_arg(lua_State *L, int i) {
    if (lua_istable(L, i)) {
        lua_getfield(L, i, "id");
        int64_t id = (int64_t)luaL_checkinteger(L, -1);
        lua_pop(L, 1);
        return id;
    }
    return (int64_t)luaL_checkinteger(L, i);
}

/* The fields a transition sets, from the table at I ({error=, version=, retryCount=,
 * completedAt=, expiresAt=, data=}; none when it is not a table): the JOBDB_SET_* flags. */
static int transition_fields(lua_State *L, int i, jobdb_job *in) {
    memset(in, 0, sizeof *in);
    int set = 0;
    if (!lua_istable(L, i)) return 0;
    static const struct { const char *k; int flag; } fields[] = {
        {"version", JOBDB_SET_VERSION}, {"retryCount", JOBDB_SET_RETRY},
        {"completedAt", JOBDB_SET_COMPLETED}, {"expiresAt", JOBDB_SET_EXPIRES}};
    double v[4] = {0, 0, 0, 0};
    for (int f = 0; f < 4; f++) {
        lua_getfield(L, i, fields[f].k);
        if (!lua_isnil(L, -1)) { set |= fields[f].flag; v[f] = luaL_checknumber(L, -1); }
        lua_pop(L, 1);
    }
    in->version = (int64_t)v[0];
    in->retry_count = (int64_t)v[1];
    in->completed_at = v[2];
    in->expires_at = v[3];
    if (lua_getfield(L, i, "error") != LUA_TNIL) set |= JOBDB_SET_ERROR;
    /* stored errors reach the API, alerts and Notion: never with a secret in them */
    in->error = lua_toboolean(L, -1) ? (char *)l_pushredacted(L, luaL_checkstring(L, -1)) : NULL;
    if (lua_getfield(L, i, "data") != LUA_TNIL) { set |= JOBDB_SET_DATA; in->data = (char *)luaL_checkstring(L, -1); }
    return set;        /* the values stay on the stack, so the strings live until the call returns */
}

/* store:transition(job or id, state, {error=, version=, retryCount=, completedAt=, expiresAt=, data=}) */
static int l_transition(lua_State *L) {
    ljobs *s = check_store(L);
    int64_t id = job_id_arg(L, 2);
    const char *st = luaL_checkstring(L, 3);
    enum jobdb_state to;
    if (jobdb_state_parse(st, &to) != 0) return luaL_argerror(L, 3, "unknown state");
    jobdb_job in, out;
    int set = transition_fields(L, 4, &in);
    int rc = jobdb_transition(s->db, id, to, &in, set, &out);
    if (rc) return fail_db(L, s, rc);
    push_job(L, &out);
    jobdb_job_clear(&out);
    return 1;
}

/* The store's row callbacks build a list: the row's table on top goes to the list's end. */
static int append(lua_State *L) {
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

static int list_cb(const jobdb_job *j, void *ud) {
    lua_State *L = ud;
    push_job(L, j);
    return append(L);
}

/* store:list{status=, batchId=, limit=, cursor=, newest_first=} -> jobs, next_cursor (nil at
 * the end) */
static int l_list(lua_State *L) {
    ljobs *s = check_store(L);
    jobdb_query q = {-1, NULL, 0, 50, 0};
    const char *status = NULL;
    if (lua_istable(L, 2)) {
        status = l_optstrfield(L, 2, "status", NULL);
        q.batch_id = l_optstrfield(L, 2, "batchId", NULL);
        lua_Integer limit = l_optintfield(L, 2, "limit", 50);
        luaL_argcheck(L, limit >= 1 && limit <= 1000, 2, "limit must be 1..1000");
        q.limit = (int)limit;
        q.after = (int64_t)l_optintfield(L, 2, "cursor", 0);
        lua_getfield(L, 2, "newest_first");
        q.newest_first = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    enum jobdb_state st;
    if (status && jobdb_state_parse(status, &st) != 0) return luaL_error(L, "jobs: unknown status '%s'", status);
    if (status) q.state = (int)st;
    lua_newtable(L);
    int rc = jobdb_list(s->db, &q, list_cb, L);
    if (rc) return fail_db(L, s, rc);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n < q.limit) return 1;
    lua_rawgeti(L, -1, n);
    lua_getfield(L, -1, "id");
    lua_remove(L, -2);
    return 2;
}

static int l_summary(lua_State *L) {
    ljobs *s = check_store(L);
    /* WINDOW: the caller's (alerts.warn_before); without one no job counts as approaching */
    double now = luaL_optnumber(L, 2, clock_now()), window = luaL_optnumber(L, 3, 0);
    jobdb_counts c;
    int rc = jobdb_summary(s->db, now, window, &c);
    if (rc) return fail_db(L, s, rc);
    lua_createtable(L, 0, JOB_NSTATES + 1);
    for (int i = 0; i < JOB_NSTATES; i++) {
        lua_pushinteger(L, (lua_Integer)c.by_state[i]);
        lua_setfield(L, -2, jobdb_state_name((enum jobdb_state)i));
    }
    lua_pushinteger(L, (lua_Integer)c.approaching);
    lua_setfield(L, -2, "approachingExpiration");
    return 1;
}

/* jobs:expiring(now, window, limit) -> unfinished jobs due in (now, now + window] */
static int l_expiring(lua_State *L) {
    ljobs *s = check_store(L);
    double now = luaL_checknumber(L, 2), window = luaL_checknumber(L, 3);
    int limit = (int)luaL_optinteger(L, 4, 100);
    luaL_argcheck(L, limit >= 1 && limit <= 1000, 4, "limit must be 1..1000");
    lua_newtable(L);
    int rc = jobdb_expiring(s->db, now, window, limit, list_cb, L);
    return rc ? fail_db(L, s, rc) : 1;
}

static int events_cb(double t, const char *kind, const char *detail, void *ud) {
    lua_State *L = ud;
    lua_createtable(L, 0, 3);
    set_time(L, "t", t);
    set_str(L, "kind", kind);
    set_str(L, "detail", detail);
    return append(L);
}

static int l_events(lua_State *L) {
    ljobs *s = check_store(L);
    lua_newtable(L);
    int rc = jobdb_events(s->db, job_id_arg(L, 2), events_cb, L);
    return rc ? fail_db(L, s, rc) : 1;
}

static int l_event(lua_State *L) {
    ljobs *s = check_store(L);
    const char *detail = lua_isnoneornil(L, 4) ? NULL : l_pushredacted(L, luaL_checkstring(L, 4));
    int rc = jobdb_event_add(s->db, job_id_arg(L, 2), luaL_checkstring(L, 3), detail);
    if (rc) return fail_db(L, s, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* jobs:add_asset(job, {variant=, filePath=, fileName=, fileSize=, sha256=, version=, downloadedAt=}) */
/* The asset table at I as add_asset takes it (its strings borrowed from the table). */
static void asset_arg(lua_State *L, int i, jobdb_asset *a) {
    luaL_checktype(L, i, LUA_TTABLE);
    *a = (jobdb_asset){
        l_optstrfield(L, i, "variant", NULL), l_optstrfield(L, i, "filePath", NULL),
        l_optstrfield(L, i, "fileName", NULL), (int64_t)l_optnumfield(L, i, "fileSize", -1),
        l_optstrfield(L, i, "sha256", NULL), (int64_t)l_optnumfield(L, i, "version", 0),
        l_optnumfield(L, i, "downloadedAt", 0)};
    if (!a->variant || !a->path || !a->file_name || !a->sha256 || a->size < 0 || a->version < 1)
        luaL_error(L, "jobs: an asset needs variant, filePath, fileName, fileSize, sha256 and version");
}

static int l_add_asset(lua_State *L) {
    ljobs *s = check_store(L);
    int64_t id = job_id_arg(L, 2);
    jobdb_asset a;
    asset_arg(L, 3, &a);
    int rc = jobdb_asset_add(s->db, id, &a);
    if (rc) return fail_db(L, s, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* store:complete_with_assets(job or id, {asset, ...}, {fields as transition's}) -> the job,
 * completed: the assets (one of a variant and version already recorded is skipped) and the
 * transition in one transaction. */
#define MAX_ASSETS 64
static int l_complete_with_assets(lua_State *L) {
    ljobs *s = check_store(L);
    int64_t id = job_id_arg(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
    luaL_argcheck(L, n <= MAX_ASSETS, 3, "at most 64 assets");
    jobdb_asset assets[MAX_ASSETS];
    lua_settop(L, 4);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 3, i);      /* its strings stay alive in the list at 3 */
        asset_arg(L, lua_gettop(L), &assets[i - 1]);
        lua_pop(L, 1);
    }
    jobdb_job in, out;
    int set = transition_fields(L, 4, &in);
    int rc = jobdb_complete_with_assets(s->db, id, assets, (int)n, &in, set, &out);
    if (rc) return fail_db(L, s, rc);
    push_job(L, &out);
    jobdb_job_clear(&out);
    return 1;
}

static int assets_cb(const jobdb_asset *a, void *ud) {
    lua_State *L = ud;
    lua_createtable(L, 0, 7);
    set_str(L, "type", a->variant);
    set_str(L, "filePath", a->path);
    set_str(L, "fileName", a->file_name);
    lua_pushinteger(L, (lua_Integer)a->size);
    lua_setfield(L, -2, "fileSize");
    set_str(L, "sha256", a->sha256);
    lua_pushinteger(L, (lua_Integer)a->version);
    lua_setfield(L, -2, "version");
    set_time(L, "downloadedAt", a->downloaded_at);
    return append(L);
}

static int l_assets(lua_State *L) {
    ljobs *s = check_store(L);
    lua_newtable(L);
    int rc = jobdb_assets(s->db, job_id_arg(L, 2), assets_cb, L);
    return rc ? fail_db(L, s, rc) : 1;
}

static int l_recover(lua_State *L) {
    ljobs *s = check_store(L);
    int64_t moved;
    int rc = jobdb_recover(s->db, &moved);
    if (rc) return fail_db(L, s, rc);
    lua_pushinteger(L, (lua_Integer)moved);
    return 1;
}

static int l_max_version(lua_State *L) {
    ljobs *s = check_store(L);
    int64_t v;
    int rc = jobdb_max_version(s->db, luaL_checkstring(L, 2), luaL_checkstring(L, 3), &v);
    if (rc) return fail_db(L, s, rc);
    lua_pushinteger(L, (lua_Integer)v);
    return 1;
}

/* jobs:claim_version(batch, video, floor) -> the version reserved: max(highest + 1, floor) */
static int l_claim_version(lua_State *L) {
    ljobs *s = check_store(L);
    int64_t v;
    int rc = jobdb_claim_version(s->db, luaL_checkstring(L, 2), luaL_checkstring(L, 3),
                                 (int64_t)luaL_checkinteger(L, 4), &v);
    if (rc) return fail_db(L, s, rc);
    lua_pushinteger(L, (lua_Integer)v);
    return 1;
}

/* jobs:webhook_seen(id, now, keep) -> true for a replay, false for a new id (now recorded) */
static int l_webhook_seen(lua_State *L) {
    ljobs *s = check_store(L);
    int seen = 0;
    int rc = jobdb_webhook_seen(s->db, luaL_checkstring(L, 2), luaL_checknumber(L, 3), luaL_checknumber(L, 4), &seen);
    if (rc) return fail_db(L, s, rc);
    lua_pushboolean(L, seen);
    return 1;
}

/* jobs:probe() -> true, or nil, err when the store cannot write */
static int l_probe(lua_State *L) {
    ljobs *s = check_store(L);
    int rc = jobdb_probe(s->db);
    if (rc) return fail_db(L, s, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_close(lua_State *L) {
    ljobs *s = luaL_checkudata(L, 1, JOBS_MT);
    jobdb_close(s->db);
    s->db = NULL;
    return 0;
}

static int l_open(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);      /* the caller's: --data is pipeline.lua's */
    ljobs *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->db = NULL;
    luaL_setmetatable(L, JOBS_MT);
    char err[512];
    if (jobdb_open(dir, &s->db, err, sizeof err) != 0) return rt_fail(L, "database", "%s", err);
    return 1;
}

void l_jobdb_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"create", l_create}, {"get", l_get}, {"transition", l_transition}, {"list", l_list},
        {"summary", l_summary}, {"expiring", l_expiring}, {"events", l_events}, {"event", l_event}, {"recover", l_recover},
        {"add_asset", l_add_asset}, {"complete_with_assets", l_complete_with_assets}, {"assets", l_assets},
        {"max_version", l_max_version}, {"claim_version", l_claim_version},
        {"webhook_seen", l_webhook_seen}, {"probe", l_probe},
        {"close", l_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_close}, {"__close", l_close}, {NULL, NULL}};
    l_newclass(L, JOBS_MT, methods, meta);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "open");
    lua_setfield(L, -2, "jobdb");
    /* the state names, in the store's order: jobdb.c writes them once */
    lua_createtable(L, JOB_NSTATES, 0);
    for (int i = 0; i < JOB_NSTATES; i++) {
        lua_pushstring(L, jobdb_state_name((enum jobdb_state)i));
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "job_states");
    /* the legal moves, {from = {to = true}}: another backend enforces the same machine */
    lua_createtable(L, 0, JOB_NSTATES);
    for (int i = 0; i < JOB_NSTATES; i++) {
        lua_createtable(L, 0, JOB_NSTATES);
        for (int k = 0; k < JOB_NSTATES; k++) {
            if (!jobdb_can_transition((enum jobdb_state)i, (enum jobdb_state)k)) continue;
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, jobdb_state_name((enum jobdb_state)k));
        }
        lua_setfield(L, -2, jobdb_state_name((enum jobdb_state)i));
    }
    lua_setfield(L, -2, "job_moves");
}
