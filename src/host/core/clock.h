/* clock.h — the one monotonic clock of routescore (CLI progress, server
 * deadlines and metrics, the batcher's queue times). Thread-safe. */
#ifndef RS_CLOCK_H
#define RS_CLOCK_H

/* Seconds on CLOCK_MONOTONIC (an arbitrary origin: use differences). */
double rs_clock_now(void);

#endif
