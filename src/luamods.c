/* luamods.c: `require` for assetd's own Lua modules. One searcher, placed right after
 * package.preload, looks in the development tree (when the daemon has one) and then in the
 * copy built into the binary, mirroring package.path's "?.lua" and "?/init.lua" templates. */
#include "luamods.h"
#include "runtime.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

const struct luamods_file *luamods_find(const char *path) {
    for (const struct luamods_file *f = luamods_files; f->path; f++)
        if (strcmp(f->path, path) == 0) return f;
    return NULL;
}

static int readable(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    fclose(f);
    return 1;
}

/* The file REL (a path relative to the Lua tree) in DIR, pushed, when it is there. */
static const char *dev_file(lua_State *L, const char *dir, const char *rel) {
    if (!dir) return NULL;
    const char *path = lua_pushfstring(L, "%s/%s", dir, rel);
    if (readable(path)) return path;
    lua_pop(L, 1);
    return NULL;
}

/* package.searchers protocol: a loader and its "file name", or a message for require. The
 * development tree (upvalue 1, nil when there is none) wins file by file, so one edited module
 * in it is enough and the rest come from the binary. */
static int searcher(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    const char *dir = lua_tostring(L, lua_upvalueindex(1));
    const char *base = luaL_gsub(L, name, ".", "/");
    static const char *const templates[] = {"%s.lua", "%s/init.lua"};
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++) {
        const char *rel = lua_pushfstring(L, templates[i], base);
        const char *path = dev_file(L, dir, rel);
        if (path) {
            if (luaL_loadfilex(L, path, "t") != LUA_OK)
                return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, path,
                                  lua_tostring(L, -1));
            lua_pushstring(L, path);
            return 2;
        }
        const struct luamods_file *f = luamods_find(rel);
        if (!f) { lua_pop(L, 1); continue; }
        /* "@lua/assetd/x.lua": errors name the file as it stands in the source tree */
        const char *chunk = lua_pushfstring(L, "@lua/%s", f->path);
        if (luaL_loadbufferx(L, f->data, f->len, chunk, "t") != LUA_OK)
            return luaL_error(L, "error loading built-in module '%s':\n\t%s", name, lua_tostring(L, -1));
        lua_pushstring(L, chunk + 1);
        return 2;
    }
    if (dir) lua_pushfstring(L, "no module '%s' in %s or built in", name, dir);
    else lua_pushfstring(L, "no built-in module '%s'", name);   /* require adds the "\n\t" */
    return 1;
}

/* resources.read(REL): a file of the Lua tree that is not a module (the dashboard page), by
 * the same rule as the searcher; nil, err when neither has it. */
static int resources_read(lua_State *L) {
    const char *rel = luaL_checkstring(L, 1);
    const char *path = dev_file(L, lua_tostring(L, lua_upvalueindex(1)), rel);
    if (path) {
        FILE *fp = fopen(path, "rb");
        if (!fp) return rt_fail(L, "io", "cannot open %s", path);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        size_t n;
        do {
            char *p = luaL_prepbuffer(&b);
            n = fread(p, 1, LUAL_BUFFERSIZE, fp);
            luaL_addsize(&b, n);
        } while (n == LUAL_BUFFERSIZE);
        int bad = ferror(fp);
        fclose(fp);
        if (bad) return rt_fail(L, "io", "cannot read %s", path);
        luaL_pushresult(&b);
        return 1;
    }
    const struct luamods_file *f = luamods_find(rel);
    if (!f) return rt_fail(L, "not_found", "no file %s in the Lua tree", rel);
    lua_pushlstring(L, f->data, f->len);
    return 1;
}

static int open_resources(lua_State *L) {
    lua_newtable(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, resources_read, 1);
    lua_setfield(L, -2, "read");
    return 1;
}

void luamods_open(lua_State *L, const char *devdir) {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = n; i >= 2; i--) {        /* make room at 2, right after preload */
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushstring(L, devdir);                    /* nil when NULL */
    lua_pushcclosure(L, searcher, 1);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 1);
    lua_getfield(L, -1, "preload");
    lua_pushstring(L, devdir);
    lua_pushcclosure(L, open_resources, 1);
    lua_setfield(L, -2, "assetd.resources");
    lua_pop(L, 2);
}
