/* jobdb.c: the SQLite backend of the job store (WAL mode, schema versioned with
 * PRAGMA user_version). Prepared statements are made once at open; every write is one
 * transaction, so a kill -9 leaves either the old or the new row, never half of one. */
#include "jobdb.h"

#include "clock.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCHEMA_VERSION 2

/* Migrations are never edited once released. v1's DEFAULT 'openai' for provider is never used:
 * every insert names the caller's provider (the default is lua/assetd/defaults.lua's). */

static const char schema_v1[] =
    "CREATE TABLE jobs(id INTEGER PRIMARY KEY, page_id TEXT NOT NULL, video_id TEXT NOT NULL,"
    " batch_id TEXT NOT NULL, provider TEXT NOT NULL DEFAULT 'openai', state INTEGER NOT NULL,"
    " completed_at REAL NOT NULL DEFAULT 0, expires_at REAL NOT NULL DEFAULT 0,"
    " created_at REAL NOT NULL, updated_at REAL NOT NULL, version INTEGER NOT NULL DEFAULT 0,"
    " retry_count INTEGER NOT NULL DEFAULT 0, error TEXT, data TEXT, UNIQUE(page_id, video_id));"
    "CREATE INDEX jobs_state ON jobs(state, id);"
    "CREATE INDEX jobs_batch ON jobs(batch_id, id);"
    "CREATE INDEX jobs_page ON jobs(page_id);"
    "CREATE INDEX jobs_expiry ON jobs(state, expires_at);"
    "CREATE TABLE events(id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, t REAL NOT NULL,"
    " kind TEXT NOT NULL, detail TEXT);"
    "CREATE INDEX events_job ON events(job_id, id);"
    "CREATE TABLE assets(id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs(id),"
    " variant TEXT NOT NULL, path TEXT NOT NULL, file_name TEXT NOT NULL, size INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL, version INTEGER NOT NULL, downloaded_at REAL NOT NULL);"
    "CREATE INDEX assets_job ON assets(job_id, id);"
    "CREATE TABLE versions(batch_id TEXT NOT NULL, video_id TEXT NOT NULL,"
    " max_version INTEGER NOT NULL, PRIMARY KEY(batch_id, video_id)) WITHOUT ROWID;";

/* v2: webhook ids already acted on (kept for the signature tolerance window, so a replay
 * after a restart is still known), and one row the health probe rewrites. */
static const char schema_v2[] =
    "CREATE TABLE webhook_ids(id TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX webhook_ids_seen ON webhook_ids(seen_at);"
    "CREATE TABLE health(id INTEGER PRIMARY KEY CHECK(id = 1), checked_at REAL NOT NULL);";

static const char *const migrations[SCHEMA_VERSION] = {schema_v1, schema_v2};

#define JOB_COLS "id, page_id, video_id, batch_id, provider, state, completed_at, expires_at," \
                 " created_at, updated_at, version, retry_count, error, data"

enum stmt_id {
    S_INSERT, S_BY_ID, S_BY_KEY, S_BY_PAGE, S_UPDATE, S_EVENT_ADD, S_EVENTS, S_COUNTS,
    S_APPROACHING, S_EXPIRING, S_MAXV, S_CLAIMV, S_ASSET_ADD, S_ASSET_HAS, S_ASSETS, S_WEBHOOK_ADD, S_WEBHOOK_PRUNE,
    S_PROBE, S_BEGIN, S_COMMIT, S_ROLLBACK, S_NSTMTS
};

static const char *const stmt_sql[S_NSTMTS] = {
    [S_INSERT] = "INSERT INTO jobs(page_id, video_id, batch_id, provider, state, completed_at,"
                 " expires_at, created_at, updated_at, data) VALUES(?,?,?,?,?,?,?,?,?,?)",
    [S_BY_ID] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?",
    [S_BY_KEY] = "SELECT " JOB_COLS " FROM jobs WHERE page_id = ? AND video_id = ?",
    [S_BY_PAGE] = "SELECT " JOB_COLS " FROM jobs WHERE page_id = ? ORDER BY id DESC LIMIT 1",
    [S_UPDATE] = "UPDATE jobs SET state = ?, completed_at = ?, expires_at = ?, version = ?,"
                 " retry_count = ?, error = ?, data = ?, updated_at = ? WHERE id = ?",
    [S_EVENT_ADD] = "INSERT INTO events(job_id, t, kind, detail) VALUES(?,?,?,?)",
    [S_EVENTS] = "SELECT t, kind, detail FROM events WHERE job_id = ? ORDER BY id",
    [S_COUNTS] = "SELECT state, count(*) FROM jobs GROUP BY state",
    [S_APPROACHING] = "SELECT count(*) FROM jobs WHERE state IN (0,1,2) AND expires_at > ?1"
                      " AND expires_at <= ?2",
    [S_EXPIRING] = "SELECT " JOB_COLS " FROM jobs WHERE state IN (0,1,2) AND expires_at > ?1"
                   " AND expires_at <= ?2 ORDER BY expires_at LIMIT ?3",
    [S_MAXV] = "SELECT max_version FROM versions WHERE batch_id = ? AND video_id = ?",
    [S_CLAIMV] = "INSERT INTO versions(batch_id, video_id, max_version) VALUES(?,?,?)"
                " ON CONFLICT(batch_id, video_id) DO UPDATE SET"
                " max_version = max(max_version + 1, excluded.max_version) RETURNING max_version",
    [S_ASSET_ADD] = "INSERT INTO assets(job_id, variant, path, file_name, size, sha256, version,"
                    " downloaded_at) VALUES(?,?,?,?,?,?,?,?)",
    [S_ASSET_HAS] = "SELECT 1 FROM assets WHERE job_id = ? AND variant = ? AND version = ?",
    [S_ASSETS] = "SELECT variant, path, file_name, size, sha256, version, downloaded_at FROM assets"
                 " WHERE job_id = ? ORDER BY id",
    [S_WEBHOOK_ADD] = "INSERT INTO webhook_ids(id, seen_at) VALUES(?,?) ON CONFLICT(id) DO NOTHING",
    [S_WEBHOOK_PRUNE] = "DELETE FROM webhook_ids WHERE seen_at < ?",
    [S_PROBE] = "INSERT INTO health(id, checked_at) VALUES(1, ?)"
                " ON CONFLICT(id) DO UPDATE SET checked_at = excluded.checked_at",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

struct jobdb {
    sqlite3 *db;
    sqlite3_stmt *st[S_NSTMTS];
    char err[512];
};

static const char *const state_names[JOB_NSTATES] = {
    "waiting", "pending", "downloading", "completed", "failed", "expired"};

/* Legal moves; a job may also stay where it is to update its fields. */
static const unsigned char legal[JOB_NSTATES][JOB_NSTATES] = {
    /*                 wait pend down comp fail expi */
    [JOB_WAITING]     = {1, 1, 0, 0, 1, 1},
    [JOB_PENDING]     = {0, 1, 1, 0, 1, 1},
    [JOB_DOWNLOADING] = {0, 1, 1, 1, 1, 1},
    [JOB_COMPLETED]   = {0, 1, 0, 1, 0, 0},   /* -> pending: a re-download (next version) */
    [JOB_FAILED]      = {1, 1, 0, 0, 1, 0},   /* a manual retry: -> pending, or -> waiting
                                                  when the video was never seen complete */
    [JOB_EXPIRED]     = {0, 0, 0, 0, 0, 1},
};

const char *jobdb_state_name(enum jobdb_state s) {
    return (unsigned)s < JOB_NSTATES ? state_names[s] : "?";
}

int jobdb_state_parse(const char *name, enum jobdb_state *out) {
    for (int i = 0; i < JOB_NSTATES; i++)
        if (strcmp(name, state_names[i]) == 0) { *out = (enum jobdb_state)i; return 0; }
    return -1;
}

int jobdb_can_transition(enum jobdb_state from, enum jobdb_state to) {
    return (unsigned)from < JOB_NSTATES && (unsigned)to < JOB_NSTATES && legal[from][to];
}

const char *jobdb_errmsg(const jobdb *db) { return db->err; }

static int set_err(jobdb *db, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int set_err(jobdb *db, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->err, sizeof db->err, fmt, ap);
    va_end(ap);
    return code;
}

static int sql_err(jobdb *db, const char *what) {
    return set_err(db, JOBDB_EIO, "job store: %s: %s", what, sqlite3_errmsg(db->db));
}

static sqlite3_stmt *stmt(jobdb *db, enum stmt_id id) {
    sqlite3_stmt *s = db->st[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static int exec1(jobdb *db, enum stmt_id id) {
    return sqlite3_step(stmt(db, id)) == SQLITE_DONE ? 0 : sql_err(db, stmt_sql[id]);
}

/* ---- open, migrate, recover ------------------------------------------------------------ */

static int migrate(jobdb *db) {
    sqlite3_stmt *s;
    int version = 0;
    if (sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK) return sql_err(db, "user_version");
    if (sqlite3_step(s) == SQLITE_ROW) version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (version > SCHEMA_VERSION)
        return set_err(db, JOBDB_EIO, "job store: database schema %d is newer than this assetd (%d)",
                       version, SCHEMA_VERSION);
    if (version == SCHEMA_VERSION) return 0;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d;", SCHEMA_VERSION);
    /* every step from the store's version on, in one transaction: all of them or none */
    int ok = sqlite3_exec(db->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    for (int v = version; ok && v < SCHEMA_VERSION; v++)
        ok = sqlite3_exec(db->db, migrations[v], NULL, NULL, NULL) == SQLITE_OK;
    if (ok && sqlite3_exec(db->db, sql, NULL, NULL, NULL) == SQLITE_OK &&
        sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    int rc = sql_err(db, "migrating the schema");
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int jobdb_open(const char *dir, jobdb **out, char *err, size_t errlen) {
    char path[4096];
    *out = NULL;
    if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0) {
        snprintf(err, errlen, "job store: cannot create or write the data directory %s", dir);
        return JOBDB_EIO;
    }
    snprintf(path, sizeof path, "%s/jobs.db", dir);
    jobdb *db = calloc(1, sizeof *db);
    if (!db) { snprintf(err, errlen, "job store: out of memory"); return JOBDB_EIO; }
    int rc = JOBDB_EIO;
    if (sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        sql_err(db, path);
        goto fail;
    }
    sqlite3_busy_timeout(db->db, 5000);
    if (sqlite3_exec(db->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                             " PRAGMA foreign_keys=ON;", NULL, NULL, NULL) != SQLITE_OK) {
        sql_err(db, "setting WAL mode");
        goto fail;
    }
    if ((rc = migrate(db)) != 0) goto fail;
    for (int i = 0; i < S_NSTMTS; i++)
        if (sqlite3_prepare_v3(db->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->st[i], NULL) != SQLITE_OK) {
            rc = sql_err(db, stmt_sql[i]);
            goto fail;
        }
    *out = db;
    return 0;
fail:
    snprintf(err, errlen, "%s", db->err);
    jobdb_close(db);
    return rc ? rc : JOBDB_EIO;
}

void jobdb_close(jobdb *db) {
    if (!db) return;
    for (int i = 0; i < S_NSTMTS; i++) sqlite3_finalize(db->st[i]);
    sqlite3_close(db->db);
    free(db);
}

int jobdb_recover(jobdb *db, int64_t *moved) {
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE jobs SET state = %d, updated_at = %.3f WHERE state = %d",
             JOB_PENDING, clock_now(), JOB_DOWNLOADING);
    if (sqlite3_exec(db->db, sql, NULL, NULL, NULL) != SQLITE_OK) return sql_err(db, "recovery");
    *moved = sqlite3_changes64(db->db);
    return 0;
}

/* ---- rows ------------------------------------------------------------------------------ */

static char *dup_col(sqlite3_stmt *s, int i) {
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? strdup((const char *)t) : NULL;
}

static void copy_col(sqlite3_stmt *s, int i, char *dst, size_t cap) {
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static void read_job(sqlite3_stmt *s, jobdb_job *j) {
    memset(j, 0, sizeof *j);
    j->id = sqlite3_column_int64(s, 0);
    copy_col(s, 1, j->page_id, sizeof j->page_id);
    copy_col(s, 2, j->video_id, sizeof j->video_id);
    copy_col(s, 3, j->batch_id, sizeof j->batch_id);
    copy_col(s, 4, j->provider, sizeof j->provider);
    j->state = (enum jobdb_state)sqlite3_column_int(s, 5);
    j->completed_at = sqlite3_column_double(s, 6);
    j->expires_at = sqlite3_column_double(s, 7);
    j->created_at = sqlite3_column_double(s, 8);
    j->updated_at = sqlite3_column_double(s, 9);
    j->version = sqlite3_column_int64(s, 10);
    j->retry_count = sqlite3_column_int64(s, 11);
    j->error = dup_col(s, 12);
    j->data = dup_col(s, 13);
}

void jobdb_job_clear(jobdb_job *job) {
    free(job->error);
    free(job->data);
    job->error = job->data = NULL;
}

static int fetch_one(jobdb *db, sqlite3_stmt *s, jobdb_job *out, const char *what) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) { read_job(s, out); sqlite3_reset(s); return 0; }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) return set_err(db, JOBDB_ENOTFOUND, "no job %s", what);
    return sql_err(db, "reading a job");
}

int jobdb_get(jobdb *db, int64_t id, jobdb_job *out) {
    sqlite3_stmt *s = stmt(db, S_BY_ID);
    sqlite3_bind_int64(s, 1, id);
    char what[40];
    snprintf(what, sizeof what, "with id %lld", (long long)id);
    return fetch_one(db, s, out, what);
}

int jobdb_get_by_page(jobdb *db, const char *page_id, jobdb_job *out) {
    sqlite3_stmt *s = stmt(db, S_BY_PAGE);
    sqlite3_bind_text(s, 1, page_id, -1, SQLITE_STATIC);
    return fetch_one(db, s, out, "for that notionPageId");
}

int jobdb_get_by_key(jobdb *db, const char *page_id, const char *video_id, jobdb_job *out) {
    sqlite3_stmt *s = stmt(db, S_BY_KEY);
    sqlite3_bind_text(s, 1, page_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, video_id, -1, SQLITE_STATIC);
    return fetch_one(db, s, out, "for that notionPageId and soraVideoId");
}

static int event_add(jobdb *db, int64_t job_id, double t, const char *kind, const char *detail) {
    sqlite3_stmt *s = stmt(db, S_EVENT_ADD);
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_double(s, 2, t);
    sqlite3_bind_text(s, 3, kind, -1, SQLITE_STATIC);
    if (detail) sqlite3_bind_text(s, 4, detail, -1, SQLITE_STATIC);
    return sqlite3_step(s) == SQLITE_DONE ? 0 : sql_err(db, "recording an event");
}

int jobdb_event_add(jobdb *db, int64_t job_id, const char *kind, const char *detail) {
    return event_add(db, job_id, clock_now(), kind, detail);
}

static int finish_tx(jobdb *db, int rc) {
    if (rc == 0 && exec1(db, S_COMMIT) == 0) return 0;
    char keep[sizeof db->err];
    memcpy(keep, db->err, sizeof keep);
    exec1(db, S_ROLLBACK);
    memcpy(db->err, keep, sizeof keep);
    return rc ? rc : JOBDB_EIO;
}

int jobdb_create(jobdb *db, const jobdb_job *in, jobdb_job *out, int *created) {
    sqlite3_stmt *s = stmt(db, S_BY_KEY);
    sqlite3_bind_text(s, 1, in->page_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, in->video_id, -1, SQLITE_STATIC);
    *created = 0;
    int rc = fetch_one(db, s, out, "");
    if (rc != JOBDB_ENOTFOUND) return rc;
    if (exec1(db, S_BEGIN) != 0) return JOBDB_EIO;
    double now = clock_now();
    s = stmt(db, S_INSERT);
    sqlite3_bind_text(s, 1, in->page_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, in->video_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, in->batch_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, in->provider, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 5, in->state);
    sqlite3_bind_double(s, 6, in->completed_at);
    sqlite3_bind_double(s, 7, in->expires_at);
    sqlite3_bind_double(s, 8, now);
    sqlite3_bind_double(s, 9, now);
    if (in->data) sqlite3_bind_text(s, 10, in->data, -1, SQLITE_STATIC);
    rc = sqlite3_step(s) == SQLITE_DONE ? 0 : sql_err(db, "creating a job");
    int64_t id = sqlite3_last_insert_rowid(db->db);
    if (rc == 0) rc = event_add(db, id, now, "created", jobdb_state_name(in->state));
    if ((rc = finish_tx(db, rc)) != 0) return rc;
    *created = 1;
    return jobdb_get(db, id, out);
}

/* The transition's writes, inside the caller's transaction. */
static int transition_tx(jobdb *db, int64_t id, enum jobdb_state to, const jobdb_job *in, int set) {
    jobdb_job cur;
    int rc = jobdb_get(db, id, &cur);
    int got = rc == 0;
    if (rc == 0 && !jobdb_can_transition(cur.state, to))
        rc = set_err(db, JOBDB_EILLEGAL, "job %lld cannot go from %s to %s", (long long)id,
                     jobdb_state_name(cur.state), jobdb_state_name(to));
    if (rc == 0) {
        double now = clock_now();
        sqlite3_stmt *s = stmt(db, S_UPDATE);
        sqlite3_bind_int(s, 1, to);
        sqlite3_bind_double(s, 2, set & JOBDB_SET_COMPLETED ? in->completed_at : cur.completed_at);
        sqlite3_bind_double(s, 3, set & JOBDB_SET_EXPIRES ? in->expires_at : cur.expires_at);
        sqlite3_bind_int64(s, 4, set & JOBDB_SET_VERSION ? in->version : cur.version);
        sqlite3_bind_int64(s, 5, set & JOBDB_SET_RETRY ? in->retry_count : cur.retry_count);
        const char *error = set & JOBDB_SET_ERROR ? in->error : cur.error;
        const char *data = set & JOBDB_SET_DATA ? in->data : cur.data;
        if (error) sqlite3_bind_text(s, 6, error, -1, SQLITE_STATIC);
        if (data) sqlite3_bind_text(s, 7, data, -1, SQLITE_STATIC);
        sqlite3_bind_double(s, 8, now);
        sqlite3_bind_int64(s, 9, id);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : sql_err(db, "updating a job");
        if (rc == 0 && cur.state != to) {
            char detail[64];
            snprintf(detail, sizeof detail, "%s -> %s", jobdb_state_name(cur.state), jobdb_state_name(to));
            rc = event_add(db, id, now, "state", detail);
        }
    }
    if (got) jobdb_job_clear(&cur);
    return rc;
}

int jobdb_transition(jobdb *db, int64_t id, enum jobdb_state to, const jobdb_job *in, int set,
                     jobdb_job *out) {
    if (exec1(db, S_BEGIN) != 0) return JOBDB_EIO;
    int rc = finish_tx(db, transition_tx(db, id, to, in, set));
    if (rc != 0) return rc;
    return out ? jobdb_get(db, id, out) : 0;
}

static int asset_recorded(jobdb *db, int64_t job_id, const jobdb_asset *a, int *has) {
    sqlite3_stmt *s = stmt(db, S_ASSET_HAS);
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_text(s, 2, a->variant, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, a->version);
    int rc = sqlite3_step(s);
    *has = rc == SQLITE_ROW;
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : sql_err(db, "reading assets");
}

int jobdb_complete_with_assets(jobdb *db, int64_t id, const jobdb_asset *assets, int n,
                               const jobdb_job *in, int set, jobdb_job *out) {
    if (exec1(db, S_BEGIN) != 0) return JOBDB_EIO;
    int rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        int has = 0;
        rc = asset_recorded(db, id, &assets[i], &has);
        if (rc == 0 && !has) rc = jobdb_asset_add(db, id, &assets[i]);
    }
    if (rc == 0) rc = transition_tx(db, id, JOB_COMPLETED, in, set);
    if ((rc = finish_tx(db, rc)) != 0) return rc;
    return out ? jobdb_get(db, id, out) : 0;
}

/* Step S, giving each row to CB until it returns non-zero; the caller resets or finalizes S. */
static int each_job(jobdb *db, sqlite3_stmt *s, jobdb_job_cb cb, void *ud, const char *what) {
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        jobdb_job j;
        read_job(s, &j);
        stop = cb(&j, ud);
        jobdb_job_clear(&j);
    }
    return (stop || rc == SQLITE_DONE) ? 0 : sql_err(db, what);
}

int jobdb_list(jobdb *db, const jobdb_query *q, jobdb_job_cb cb, void *ud) {
    char sql[320];
    snprintf(sql, sizeof sql, "SELECT " JOB_COLS " FROM jobs WHERE id %s ?1%s%s ORDER BY id%s LIMIT ?4",
             q->newest_first ? "<" : ">", q->state >= 0 ? " AND state = ?2" : "",
             q->batch_id ? " AND batch_id = ?3" : "", q->newest_first ? " DESC" : "");
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->db, sql, -1, &s, NULL) != SQLITE_OK) return sql_err(db, "listing jobs");
    sqlite3_bind_int64(s, 1, q->newest_first && q->after <= 0 ? INT64_MAX : q->after);
    if (q->state >= 0) sqlite3_bind_int(s, 2, q->state);
    if (q->batch_id) sqlite3_bind_text(s, 3, q->batch_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, q->limit);
    int rc = each_job(db, s, cb, ud, "listing jobs");
    sqlite3_finalize(s);
    return rc;
}

int jobdb_summary(jobdb *db, double now, double window, jobdb_counts *out) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = stmt(db, S_COUNTS);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int st = sqlite3_column_int(s, 0);
        if (st >= 0 && st < JOB_NSTATES) out->by_state[st] = sqlite3_column_int64(s, 1);
    }
    if (rc != SQLITE_DONE) return sql_err(db, "counting jobs");
    s = stmt(db, S_APPROACHING);
    sqlite3_bind_double(s, 1, now);
    sqlite3_bind_double(s, 2, now + window);
    if (sqlite3_step(s) != SQLITE_ROW) return sql_err(db, "counting expiring jobs");
    out->approaching = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return 0;
}

int jobdb_expiring(jobdb *db, double now, double window, int limit, jobdb_job_cb cb, void *ud) {
    sqlite3_stmt *s = stmt(db, S_EXPIRING);
    sqlite3_bind_double(s, 1, now);
    sqlite3_bind_double(s, 2, now + window);
    sqlite3_bind_int(s, 3, limit);
    int rc = each_job(db, s, cb, ud, "listing expiring jobs");
    sqlite3_reset(s);
    return rc;
}

int jobdb_events(jobdb *db, int64_t job_id, jobdb_event_cb cb, void *ud) {
    sqlite3_stmt *s = stmt(db, S_EVENTS);
    sqlite3_bind_int64(s, 1, job_id);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (cb(sqlite3_column_double(s, 0), (const char *)sqlite3_column_text(s, 1),
               (const char *)sqlite3_column_text(s, 2), ud))
            break;
    rc = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : sql_err(db, "reading events");
    sqlite3_reset(s);
    return rc;
}

int jobdb_max_version(jobdb *db, const char *batch_id, const char *video_id, int64_t *out) {
    sqlite3_stmt *s = stmt(db, S_MAXV);
    sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, video_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : sql_err(db, "reading versions");
}

int jobdb_claim_version(jobdb *db, const char *batch_id, const char *video_id, int64_t floor, int64_t *out) {
    sqlite3_stmt *s = stmt(db, S_CLAIMV);
    sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, video_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, floor);
    int rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    if (rc == SQLITE_ROW) rc = sqlite3_step(s);          /* RETURNING: the write ends at DONE */
    sqlite3_reset(s);
    return rc == SQLITE_DONE && *out > 0 ? 0 : sql_err(db, "reserving a version");
}

int jobdb_asset_add(jobdb *db, int64_t job_id, const jobdb_asset *a) {
    sqlite3_stmt *s = stmt(db, S_ASSET_ADD);
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_text(s, 2, a->variant, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, a->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, a->file_name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, a->size);
    sqlite3_bind_text(s, 6, a->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 7, a->version);
    sqlite3_bind_double(s, 8, a->downloaded_at > 0 ? a->downloaded_at : clock_now());
    int rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT) return set_err(db, JOBDB_ENOTFOUND, "no job with id %lld", (long long)job_id);
    return rc == SQLITE_DONE ? 0 : sql_err(db, "recording an asset");
}

int jobdb_assets(jobdb *db, int64_t job_id, jobdb_asset_cb cb, void *ud) {
    sqlite3_stmt *s = stmt(db, S_ASSETS);
    sqlite3_bind_int64(s, 1, job_id);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        jobdb_asset a = {
            (const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
            (const char *)sqlite3_column_text(s, 2), sqlite3_column_int64(s, 3),
            (const char *)sqlite3_column_text(s, 4), sqlite3_column_int64(s, 5),
            sqlite3_column_double(s, 6)};
        if (cb(&a, ud)) break;
    }
    rc = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : sql_err(db, "reading assets");
    sqlite3_reset(s);
    return rc;
}

int jobdb_webhook_seen(jobdb *db, const char *id, double now, double keep, int *seen) {
    if (exec1(db, S_BEGIN) != 0) return JOBDB_EIO;
    sqlite3_stmt *s = stmt(db, S_WEBHOOK_PRUNE);
    sqlite3_bind_double(s, 1, now - keep);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : sql_err(db, "pruning webhook ids");
    if (rc == 0) {
        s = stmt(db, S_WEBHOOK_ADD);
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_double(s, 2, now);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : sql_err(db, "recording a webhook id");
        *seen = rc == 0 && sqlite3_changes(db->db) == 0;
    }
    return finish_tx(db, rc);
}

int jobdb_probe(jobdb *db) {
    if (exec1(db, S_BEGIN) != 0) return JOBDB_EIO;
    sqlite3_stmt *s = stmt(db, S_PROBE);
    sqlite3_bind_double(s, 1, clock_now());
    return finish_tx(db, sqlite3_step(s) == SQLITE_DONE ? 0 : sql_err(db, "writing the health row"));
}
