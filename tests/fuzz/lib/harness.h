/* harness.h: what every fuzz target shares. A failed property aborts with a message naming
 * it, so libFuzzer keeps the input as a crash like any sanitizer report; the input is handed
 * to parsers of C strings as NUL-terminated fields. Lua targets add lua_harness.h. */
#ifndef ASSETD_FUZZ_HARNESS_H
#define ASSETD_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry points, which each target defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* assert() that NDEBUG cannot remove and that says which property failed. */
#define FUZZ_CHECK(cond, ...) ((cond) ? (void)0 : fuzz_fail(__FILE__, __LINE__, __VA_ARGS__))
_Noreturn void fuzz_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A cursor over the input, split into fields. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in;

/* The bytes up to the next SEP (or the end), consumed with the SEP, as a new NUL-terminated
 * string the caller frees; *LEN (may be NULL) is their count, NULs inside included. */
char *fuzz_field(fuzz_in *in, uint8_t sep, size_t *len);
/* Everything left, the same way. */
char *fuzz_rest(fuzz_in *in, size_t *len);
/* Up to 8 bytes as a little-endian number (0 when the input has run out). */
uint64_t fuzz_u64(fuzz_in *in, size_t bytes);

#endif
