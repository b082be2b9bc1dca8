/* luamods.h: assetd's Lua modules built into the binary (scripts/embed-lua writes the table at
 * build time) and the searcher that loads them, so `require "assetd.x"` needs no Lua tree on
 * disk and an installed binary cannot pick up another version's modules. */
#ifndef ASSETD_LUAMODS_H
#define ASSETD_LUAMODS_H

#include <lua.h>
#include <stddef.h>

struct luamods_file {
    const char *path;        /* relative to lua/: "assetd/runner.lua", "assetd/dashboard.html" */
    const char *data;
    size_t len;
};

/* Every embedded file, ended by a NULL path (generated). */
extern const struct luamods_file luamods_files[];

/* The embedded file at PATH, or NULL. */
const struct luamods_file *luamods_find(const char *path);

/* Put the searcher right after package.preload and preload `assetd.resources` (its `read`
 * gives a file of the tree that is not a module, like the dashboard page). DEVDIR (or NULL):
 * a Lua tree on disk whose files win over the built-in ones, so editing a module needs no
 * rebuild; what it lacks still comes from the binary. */
void luamods_open(lua_State *L, const char *devdir);

#endif
