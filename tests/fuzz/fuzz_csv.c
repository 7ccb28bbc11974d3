/* fuzz_csv.c — the CSV reader behind eval's benchmark and score files
 * (RFC 4180 quoting, CRLF, embedded newlines): every record of arbitrary
 * bytes, at two field limits. */
#include <stdint.h>
#include <string.h>

#include "csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    for (int pass = 0; pass < 2; pass++) {
        rs_csv c;
        rs_csv_init(&c, (const char *)data, n);
        rs_csv_field f[16];
        size_t nf = 0;
        rs_err err;
        volatile size_t sum = 0;
        for (int i = 0; i < 100000; i++) {
            rs_status st = rs_csv_next(&c, f, pass ? 3 : 16, &nf, &err);
            if (st != RS_OK || nf == 0) break;
            for (size_t k = 0; k < nf; k++) sum += strlen(f[k].s) + f[k].len;
        }
        (void)sum; /* the reads are the point: ASan checks every field's bytes */
        rs_csv_free(&c);
    }
    return 0;
}
