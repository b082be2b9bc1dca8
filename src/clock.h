/* clock.h: wall-clock time as unix seconds with sub-second precision, in one place. */
#ifndef ASSETD_CLOCK_H
#define ASSETD_CLOCK_H

double clock_now(void);

#endif
