/* l_store.c: `assetd.store`, the file side of the versioned store for Lua: the root, batch
 * directories made and opened without following links, versions found on disk, and the
 * checks every id and name passes. Reservation and naming policy live in lua/assetd/versions.lua;
 * lua/assetd/files.lua uses the id and name checks to serve stored files. */
#include "lbind.h"
#include "lmodules.h"
#include "path.h"
#include "runtime.h"
#include "sha256.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORE_MT "assetd.filestore"

typedef struct lstore {
    int rootfd;
} lstore;

static lstore *check_store(lua_State *L) {
    lstore *s = luaL_checkudata(L, 1, STORE_MT);
    if (s->rootfd < 0) luaL_argerror(L, 1, "file store is closed");
    return s;
}

static const char *check_id(lua_State *L, int i, const char *what) {
    size_t len;
    const char *id = luaL_checklstring(L, i, &len);
    if (strlen(id) != len || !store_valid_id(id))
        luaL_error(L, "store: %s must match ^[A-Za-z0-9_-]{1,128}$", what);
    return id;
}

static int fail_errno(lua_State *L, const char *what, const char *name, int err) {
    return rt_fail(L, "disk", "%s %s: %s (%s)", what, name, strerror(err),
                   strerrorname_np(err) ? strerrorname_np(err) : "?");
}

/* store:batch_dir(batchId) -> absolute path of {root}/{batchId}, created if missing. */
static int l_batch_dir(lua_State *L) {
    lstore *s = check_store(L);
    const char *batch = check_id(L, 2, "batchId");
    int fd, err = store_open_batch(s->rootfd, batch, 1, &fd);
    if (err == ELOOP) return rt_fail(L, "disk", "batch directory %s is a symbolic link: refused", batch);
    if (err) return fail_errno(L, "cannot open batch directory", batch, err);
    close(fd);
    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, "%s/%s", lua_tostring(L, -1), batch);
    return 1;
}

/* Keeps the highest N per video in the table on top of the stack. */
static void note_version(const char *video, size_t len, int64_t n, void *ud) {
    lua_State *L = ud;
    lua_pushlstring(L, video, len);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TNUMBER && lua_tointeger(L, -1) >= n) { lua_pop(L, 2); return; }
    lua_pop(L, 1);
    lua_pushinteger(L, (lua_Integer)n);
    lua_rawset(L, -3);
}

/* store:scan_versions(batchId) -> {[videoId] = highest version on disk}, {} when none. */
static int l_scan_versions(lua_State *L) {
    lstore *s = check_store(L);
    const char *batch = check_id(L, 2, "batchId");
    int fd, err = store_open_batch(s->rootfd, batch, 0, &fd);
    lua_newtable(L);
    if (err == ENOENT) return 1;
    if (err) return fail_errno(L, "cannot open batch directory", batch, err);
    err = store_scan_versions(fd, note_version, L);
    close(fd);
    if (err) return fail_errno(L, "cannot list batch directory", batch, err);
    return 1;
}

/* Directory entries of FD as {name=, size=, mtime=, dir=}, links and specials left out. */
static int push_listing(lua_State *L, int fd, const char *what) {
    int dfd = dup(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        int err = errno;
        if (dfd >= 0) close(dfd);
        return fail_errno(L, "cannot list", what, err);
    }
    rewinddir(d);
    lua_newtable(L);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) continue;
        lua_createtable(L, 0, 4);
        lua_pushstring(L, e->d_name);
        lua_setfield(L, -2, "name");
        lua_pushinteger(L, (lua_Integer)st.st_size);
        lua_setfield(L, -2, "size");
        lua_pushnumber(L, (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9);
        lua_setfield(L, -2, "mtime");
        lua_pushboolean(L, S_ISDIR(st.st_mode));
        lua_setfield(L, -2, "dir");
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    closedir(d);
    return 1;
}

/* store:list([batchId]) -> the root's entries, or the batch directory's ({} when missing). */
static int l_list(lua_State *L) {
    lstore *s = check_store(L);
    if (lua_isnoneornil(L, 2)) return push_listing(L, s->rootfd, "the storage root");
    const char *batch = check_id(L, 2, "batchId");
    int fd, err = store_open_batch(s->rootfd, batch, 0, &fd);
    if (err == ENOENT) { lua_newtable(L); return 1; }
    if (err) return fail_errno(L, "cannot open batch directory", batch, err);
    int n = push_listing(L, fd, batch);
    close(fd);
    return n;
}

/* For store:f(batchId, name): the checked name, and the batch directory opened in *FD (0) or
 * the errno of opening it. */
static const char *batch_file(lua_State *L, int *fd, int *err) {
    lstore *s = check_store(L);
    const char *batch = check_id(L, 2, "batchId");
    size_t len;
    const char *name = luaL_checklstring(L, 3, &len);
    if (!path_is_component(name, len)) luaL_error(L, "store: unsafe file name");
    *err = store_open_batch(s->rootfd, batch, 0, fd);
    return name;
}

/* store:remove(batchId, name) -> true, or nil, err: unlinks one file of a batch (never a
 * directory; a link itself, not its target). */
static int l_remove(lua_State *L) {
    int fd, err;
    const char *name = batch_file(L, &fd, &err);
    if (err) return fail_errno(L, "cannot open batch directory", lua_tostring(L, 2), err);
    err = unlinkat(fd, name, 0) != 0 ? errno : 0;
    close(fd);
    if (err) return fail_errno(L, "cannot remove", name, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* store:exists(batchId, name, ...) -> whether anything (a link too) has one of the names; nil,
 * err when it cannot be told. Several names cost one opening of the batch directory. */
static int l_exists(lua_State *L) {
    int fd, err;
    const char *name = batch_file(L, &fd, &err);
    int top = lua_gettop(L);
    for (int i = 4; i <= top; i++) {          /* checked before the answer depends on them */
        size_t len;
        const char *more = luaL_checklstring(L, i, &len);
        if (!path_is_component(more, len)) {
            if (!err) close(fd);
            return luaL_error(L, "store: unsafe file name");
        }
    }
    if (err == ENOENT) { lua_pushboolean(L, 0); return 1; }
    if (err) return fail_errno(L, "cannot open batch directory", lua_tostring(L, 2), err);
    struct stat st;
    int found = 0;
    for (int i = 3; !found && i <= top; i++) {
        name = lua_tostring(L, i);
        err = fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 ? errno : 0;
        if (err && err != ENOENT) { close(fd); return fail_errno(L, "cannot stat", name, err); }
        found = err == 0;
    }
    close(fd);
    lua_pushboolean(L, found);
    return 1;
}

static int l_close(lua_State *L) {
    lstore *s = luaL_checkudata(L, 1, STORE_MT);
    if (s->rootfd >= 0) close(s->rootfd);
    s->rootfd = -1;
    return 0;
}

static int l_open(lua_State *L) {
    const char *root = luaL_checkstring(L, 1);
    char abs[4096];
    if (root[0] != '/' && getcwd(abs, sizeof abs)) {
        lua_pushfstring(L, "%s/%s", abs, root);
        root = lua_tostring(L, -1);
    }
    lstore *s = lua_newuserdatauv(L, sizeof *s, 1);
    s->rootfd = -1;
    luaL_setmetatable(L, STORE_MT);
    int err = store_open_root(root, &s->rootfd);
    if (err) return fail_errno(L, "cannot open storage root", root, err);
    /* the canonical path (no "./" or ".." parts), as paths are recorded and shown from it */
    char canon[PATH_MAX];
    lua_pushstring(L, realpath(root, canon) ? canon : root);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int l_root(lua_State *L) {
    check_store(L);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

/* store.sha256_file(path) -> 64 hex digits, or nil, err. Blocks the loop while it reads: only
 * for a file found committed but not recorded (after a crash); downloads are hashed on their
 * way to the disk. A symbolic link is refused. */
static int l_sha256_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return fail_errno(L, "cannot open", path, errno);
    char hex[65];
    int err = sha256_fd(fd, hex);
    close(fd);
    if (err) return fail_errno(L, "cannot read", path, err);
    lua_pushstring(L, hex);
    return 1;
}

static int l_valid_id(lua_State *L) {
    size_t len;
    const char *id = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, strlen(id) == len && store_valid_id(id));
    return 1;
}

static int l_valid_name(lua_State *L) {
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, path_is_component(name, len));
    return 1;
}

void l_store_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"batch_dir", l_batch_dir}, {"scan_versions", l_scan_versions}, {"root", l_root},
        {"list", l_list}, {"remove", l_remove}, {"exists", l_exists},
        {"close", l_close}, {NULL, NULL}};
    static const luaL_Reg fns[] = {
        {"open", l_open}, {"valid_id", l_valid_id}, {"valid_name", l_valid_name},
        {"sha256_file", l_sha256_file}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_close}, {NULL, NULL}};
    l_newclass(L, STORE_MT, methods, meta);
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "store");
}
