/* sdnotify.h: telling systemd (Type=notify) where the daemon is: READY=1, RELOADING=1,
 * STOPPING=1. Without libsystemd at build time, or without NOTIFY_SOCKET, nothing is sent. */
#ifndef ASSETD_SDNOTIFY_H
#define ASSETD_SDNOTIFY_H

/* STATE as sd_notify(3) takes it; 1 sent, 0 nobody listens, -1 failed. */
int sdnotify_send(const char *state);

#endif
