/* srv_log.c — see srv_log.h. */
#include "srv_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = RS_LOG_INFO; /* the only process-wide logging state */

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

int rs_log_parse_level(const char *s, rs_log_level *out) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, LEVEL_NAMES[i])) {
            *out = (rs_log_level)i;
            return 0;
        }
    return -1;
}

void rs_log_set_level(rs_log_level l) { atomic_store(&g_level, (int)l); }

int rs_log_enabled(rs_log_level l) { return (int)l >= atomic_load(&g_level); }

const char *rs_log_esc(char *buf, size_t n, const char *s) {
    size_t o = 0;
    if (!n) return buf;
    for (; s && *s && o + 7 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(buf + o, n - o, "\\u%04x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = 0;
    return buf;
}

void rs_log(rs_log_level l, const char *event, const char *fields_fmt, ...) {
    if (!rs_log_enabled(l)) return;
    char line[4096];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int o = snprintf(line, sizeof line,
                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"event\":\"%s\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, LEVEL_NAMES[l], event);
    if (fields_fmt && o < (int)sizeof line - 2) {
        line[o++] = ',';
        va_list ap;
        va_start(ap, fields_fmt);
        int k = vsnprintf(line + o, sizeof line - (size_t)o, fields_fmt, ap);
        va_end(ap);
        if (k > 0) o += k;
    }
    if (o > (int)sizeof line - 3) o = (int)sizeof line - 3; /* cut: still one line */
    line[o++] = '}';
    line[o++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)o);
    (void)w;
}
