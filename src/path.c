/* path.c: target, directory and `.part` names. Everything written to disk gets its name from
 * here, so the rules about what a name may be live in one place. */
#include "path.h"

#include <stdio.h>
#include <string.h>

int path_is_component(const char *name, size_t len) {
    if (len == 0 || len > 255) return 0;
    if (memchr(name, '/', len) || memchr(name, '\0', len)) return 0;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) return 0;
    return 1;
}

int path_split(const char *path, char *dir, size_t dir_cap, char *base, size_t base_cap) {
    const char *slash = strrchr(path, '/');
    const char *b = slash ? slash + 1 : path;
    size_t blen = strlen(b);
    if (!path_is_component(b, blen) || blen >= base_cap) return -1;
    size_t dlen = slash ? (size_t)(slash - path) : 1;
    const char *d = slash ? path : ".";
    if (slash && dlen == 0) { d = "/"; dlen = 1; }
    if (dlen >= dir_cap) return -1;
    memcpy(dir, d, dlen);
    dir[dlen] = '\0';
    memcpy(base, b, blen + 1);
    return 0;
}

int path_part_name(const char *base, char *out, size_t cap) {
    int n = snprintf(out, cap, ".%s.part", base);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}
