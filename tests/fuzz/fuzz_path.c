/* fuzz_path: the checks every id and file name passes before it reaches the disk, and the
 * names built from them. Properties: store_valid_id accepts exactly ^[A-Za-z0-9_-]{1,128}$
 * (an independent reference decides); a valid path component is 1..255 bytes without '/' or
 * NUL and is neither "." nor ".." (so joining it under a directory never leaves it); the
 * directory and base path_split gives join back to the path, and its base is a component;
 * path_part_name gives ".BASE.part" or refuses, never a cut name. */
#include "harness.h"
#include "path.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

static int ref_id(const char *s, size_t n) {
    if (n < 1 || n > 128) return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", s[i]) || s[i] == '\0')
            return 0;
    return 1;
}

static int ref_component(const char *s, size_t n) {
    if (n < 1 || n > 255 || memchr(s, '/', n) || memchr(s, '\0', n)) return 0;
    return !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.');
}

static void check_split(const char *path, size_t dir_cap, size_t base_cap) {
    char *dir = malloc(dir_cap + 1), *base = malloc(base_cap + 1);
    if (!dir || !base) abort();
    if (path_split(path, dir, dir_cap, base, base_cap) == 0) {
        size_t dl = strlen(dir), bl = strlen(base), pl = strlen(path);
        FUZZ_CHECK(dl < dir_cap && bl < base_cap, "path_split wrote past a cap");
        FUZZ_CHECK(path_is_component(base, bl), "path_split's base \"%s\" is not a component", base);
        const char *slash = strrchr(path, '/');
        if (!slash) FUZZ_CHECK(strcmp(dir, ".") == 0 && strcmp(base, path) == 0, "\"%s\" split wrongly", path);
        else if (slash == path) FUZZ_CHECK(strcmp(dir, "/") == 0 && strcmp(base, path + 1) == 0, "\"%s\" split wrongly", path);
        else FUZZ_CHECK(dl + 1 + bl == pl && memcmp(path, dir, dl) == 0 && path[dl] == '/' &&
                            strcmp(path + dl + 1, base) == 0,
                        "\"%s\" split into \"%s\" and \"%s\"", path, dir, base);
    }
    free(dir);
    free(base);
}

static void check_part(const char *base, size_t cap) {
    char *out = malloc(cap + 1);
    if (!out) abort();
    size_t bl = strlen(base);
    int r = path_part_name(base, out, cap);
    FUZZ_CHECK(r == (bl + 7 <= cap ? 0 : -1), "path_part_name of %zu bytes into %zu gave %d", bl, cap, r);
    if (r == 0)
        FUZZ_CHECK(strlen(out) == bl + 6 && out[0] == '.' && memcmp(out + 1, base, bl) == 0 &&
                       strcmp(out + 1 + bl, ".part") == 0,
                   "part name \"%s\" of \"%s\"", out, base);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_in in = {data, size};
    size_t dir_cap = 1 + (size_t)fuzz_u64(&in, 1), base_cap = 1 + (size_t)fuzz_u64(&in, 1) * 2;
    size_t n;
    char *s = fuzz_rest(&in, &n);
    size_t cn = strlen(s);                 /* what a C caller sees */
    FUZZ_CHECK(store_valid_id(s) == ref_id(s, cn), "store_valid_id(\"%s\") is %d", s, store_valid_id(s));
    FUZZ_CHECK(path_is_component(s, n) == ref_component(s, n), "path_is_component of %zu bytes is wrong", n);
    if (store_valid_id(s)) FUZZ_CHECK(path_is_component(s, cn), "a valid id \"%s\" is not a valid name", s);
    check_split(s, dir_cap, base_cap);
    check_split(s, 4096, 256);             /* partfile.c's buffers */
    check_part(s, base_cap);
    free(s);
    return 0;
}
