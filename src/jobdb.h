/* jobdb.h: the durable job store. Jobs, their assets and an append-only event history, with
 * the job state machine enforced here and nowhere else. This is the whole interface the rest
 * of assetd uses, so another backend (PostgreSQL, for several instances sharing one queue)
 * can stand behind it later without touching Lua. Functions return 0 or a JOBDB_E* code
 * with a message in the store's error buffer (jobdb_errmsg). */
#ifndef ASSETD_JOBDB_H
#define ASSETD_JOBDB_H

#include <stddef.h>
#include <stdint.h>

enum { JOBDB_OK = 0, JOBDB_ENOTFOUND = 1, JOBDB_EILLEGAL = 2, JOBDB_EINVAL = 3, JOBDB_EIO = 4 };

enum jobdb_state {
    JOB_WAITING, JOB_PENDING, JOB_DOWNLOADING, JOB_COMPLETED, JOB_FAILED, JOB_EXPIRED,
    JOB_NSTATES
};

typedef struct jobdb jobdb;

typedef struct jobdb_job {
    int64_t id;
    char page_id[129], video_id[129], batch_id[129], provider[33];
    enum jobdb_state state;
    double completed_at, expires_at;     /* unix seconds, 0 when unknown */
    double created_at, updated_at;
    int64_t version;                     /* the version reserved for the current download */
    int64_t retry_count;
    char *error;                         /* owned by the job: jobdb_job_clear frees it */
    char *data;                          /* policy fields as JSON text (Lua's), owned */
} jobdb_job;

typedef struct jobdb_counts {
    int64_t by_state[JOB_NSTATES];
    int64_t approaching;                 /* unfinished with expires_at within the window */
} jobdb_counts;

const char *jobdb_state_name(enum jobdb_state s);
int jobdb_state_parse(const char *name, enum jobdb_state *out);
/* Whether FROM -> TO is a legal transition. */
int jobdb_can_transition(enum jobdb_state from, enum jobdb_state to);

int jobdb_open(const char *dir, jobdb **out, char *err, size_t errlen);
void jobdb_close(jobdb *db);
const char *jobdb_errmsg(const jobdb *db);
/* Jobs left downloading go back to pending (their .part files stay for a resume). */
int jobdb_recover(jobdb *db, int64_t *moved);

/* Idempotent on (page_id, video_id): *CREATED says whether a new job was made. OUT is the job.
 * IN's provider is stored as given: the store has no default (Lua's defaults.lua holds it). */
int jobdb_create(jobdb *db, const jobdb_job *in, jobdb_job *out, int *created);
int jobdb_get(jobdb *db, int64_t id, jobdb_job *out);
int jobdb_get_by_page(jobdb *db, const char *page_id, jobdb_job *out);     /* the newest */
int jobdb_get_by_key(jobdb *db, const char *page_id, const char *video_id, jobdb_job *out);
/* Move job ID to TO, updating the fields given in IN (error, version, retry_count, times,
 * data: the ones marked in SET), and record a "state" event. */
enum { JOBDB_SET_ERROR = 1, JOBDB_SET_VERSION = 2, JOBDB_SET_RETRY = 4, JOBDB_SET_COMPLETED = 8,
       JOBDB_SET_EXPIRES = 16, JOBDB_SET_DATA = 32 };
int jobdb_transition(jobdb *db, int64_t id, enum jobdb_state to, const jobdb_job *in, int set,
                     jobdb_job *out);
/* Keyset pagination by id: jobs after AFTER (id > AFTER, or id < AFTER newest first, 0 being
 * the newest), optionally of one state (-1: any) and batch (NULL: any). */
typedef int (*jobdb_job_cb)(const jobdb_job *job, void *ud);
typedef struct jobdb_query {
    int state;
    const char *batch_id;
    int64_t after;
    int limit, newest_first;
} jobdb_query;
int jobdb_list(jobdb *db, const jobdb_query *q, jobdb_job_cb cb, void *ud);
int jobdb_summary(jobdb *db, double now, double window, jobdb_counts *out);
/* Unfinished jobs whose deadline is in (NOW, NOW + WINDOW], soonest first. */
int jobdb_expiring(jobdb *db, double now, double window, int limit, jobdb_job_cb cb, void *ud);

int jobdb_event_add(jobdb *db, int64_t job_id, const char *kind, const char *detail);
typedef int (*jobdb_event_cb)(double t, const char *kind, const char *detail, void *ud);
int jobdb_events(jobdb *db, int64_t job_id, jobdb_event_cb cb, void *ud);

/* The highest version ever reserved or stored for (batch, video), 0 if none. */
int jobdb_max_version(jobdb *db, const char *batch_id, const char *video_id, int64_t *out);
/* Reserve the next version of (batch, video), at least FLOOR, in one statement: it is
 * recorded before it is returned, so it is never handed out again. */
int jobdb_claim_version(jobdb *db, const char *batch_id, const char *video_id, int64_t floor, int64_t *out);

/* A stored asset of a job (strings are borrowed). */
typedef struct jobdb_asset {
    const char *variant, *path, *file_name;
    int64_t size;
    const char *sha256;
    int64_t version;
    double downloaded_at;                /* 0: now */
} jobdb_asset;
int jobdb_asset_add(jobdb *db, int64_t job_id, const jobdb_asset *a);
/* One transaction: each of the N ASSETS recorded unless the job has one of that variant and
 * version already, then the job moved to completed with IN's fields named by SET (as
 * jobdb_transition); all of it or, on any error, nothing. */
int jobdb_complete_with_assets(jobdb *db, int64_t id, const jobdb_asset *assets, int n,
                               const jobdb_job *in, int set, jobdb_job *out);
typedef int (*jobdb_asset_cb)(const jobdb_asset *a, void *ud);
int jobdb_assets(jobdb *db, int64_t job_id, jobdb_asset_cb cb, void *ud);

/* Record webhook delivery ID as seen at NOW; *SEEN says it was already there (a replay).
 * Ids older than NOW - KEEP are forgotten on the way (their signatures no longer pass). */
int jobdb_webhook_seen(jobdb *db, const char *id, double now, double keep, int *seen);
/* A real write (one row rewritten in a committed transaction): 0 when the store can write. */
int jobdb_probe(jobdb *db);

void jobdb_job_clear(jobdb_job *job);

#endif
