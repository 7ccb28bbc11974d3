/* srv_log.h — structured JSON logs on stderr, one object per line.
 *
 *   {"ts":"2024-05-01T12:00:00.123Z","level":"info","event":"listening","port":50051}
 *
 * Each line is formatted into a local buffer and written with one write(2), so
 * lines from different threads never interleave. The level threshold is the
 * one piece of process-wide state (set once at start-up, read atomically).
 * Thread-safe. */
#ifndef RS_SRV_LOG_H
#define RS_SRV_LOG_H

#include <stddef.h>

typedef enum rs_log_level { RS_LOG_DEBUG, RS_LOG_INFO, RS_LOG_WARN, RS_LOG_ERROR } rs_log_level;

/* "debug", "info", "warn", "error" -> 0 and *out; -1 for anything else. */
int rs_log_parse_level(const char *s, rs_log_level *out);
void rs_log_set_level(rs_log_level l);
int rs_log_enabled(rs_log_level l);

/* event: a fixed identifier (no escaping). fields_fmt: printf format of the
 * remaining members WITHOUT braces or a leading comma, e.g. "\"port\":%d";
 * NULL for none. Strings that may hold anything must go through
 * rs_log_esc first. */
void rs_log(rs_log_level l, const char *event, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Escapes s into buf as the inside of a JSON string (no quotes), cut to fit;
 * returns buf. */
const char *rs_log_esc(char *buf, size_t n, const char *s);

#endif
