/* sdnotify.c: sd_notify(3) from Debian's libsystemd when the build found it (ASSETD_SYSTEMD);
 * otherwise a no-op, so the daemon builds and runs without systemd. */
#include "sdnotify.h"

#ifdef ASSETD_SYSTEMD
#include <systemd/sd-daemon.h>

int sdnotify_send(const char *state) {
    int r = sd_notify(0, state);
    return r > 0 ? 1 : r == 0 ? 0 : -1;
}
#else
int sdnotify_send(const char *state) {
    return 0;
}
#endif
