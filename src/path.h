/* path.h: building the file names the engine and the store write: directory and base name of
 * a target, and the hidden `.NAME.part` beside it. Pure functions, bounded buffers. */
#ifndef ASSETD_PATH_H
#define ASSETD_PATH_H

#include <stddef.h>

/* Split PATH into its directory ("." when none) and base name. -1 when a buffer is too small,
 * the base is empty, "." or "..", or PATH holds a NUL-free but empty string. */
int path_split(const char *path, char *dir, size_t dir_cap, char *base, size_t base_cap);
/* ".BASE.part" into OUT; -1 when it does not fit. */
int path_part_name(const char *base, char *out, size_t cap);
/* Whether NAME is one safe path component: not empty, not "." or "..", no '/' and no NUL
 * within LEN bytes. */
int path_is_component(const char *name, size_t len);

#endif
