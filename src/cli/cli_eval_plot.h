/* cli_eval_plot.h — `routescore eval --plot`: quality vs strong share, one
 * cairo drawing written to the format the file name asks for (.svg, .png,
 * .pdf; any case). The CLI's own: cairo links into the routescore
 * executable only, never into the engine libraries. */
#ifndef RS_CLI_EVAL_PLOT_H
#define RS_CLI_EVAL_PLOT_H

#include <stddef.h>

#include "eval.h"
#include "status.h"

/* The plot's size: SVG/PNG pixels, PDF points. */
#define RS_PLOT_WIDTH 680
#define RS_PLOT_HEIGHT 440
#define RS_PLOT_ORACLE_STEPS 100 /* the oracle curve: shares 0, 1, ... 100 % */

typedef enum rs_plot_format { RS_PLOT_NONE = 0, RS_PLOT_SVG, RS_PLOT_PNG, RS_PLOT_PDF } rs_plot_format;

typedef struct rs_plot_data {
    const char *title;   /* e.g. the benchmark's name */
    const char *y_label; /* "accuracy (%)" or "mean judged score" */
    const rs_eval_result *res;
    double oracle[RS_PLOT_ORACLE_STEPS + 1]; /* oracle quality at share k % */
} rs_plot_data;

/* The format named by path's extension; RS_PLOT_NONE for any other name
 * (no extension, a directory part after the last dot, .jpg, ...). */
rs_plot_format rs_plot_format_of(const char *path);

/* Draws d into path in format fmt. Written to a temporary file beside path
 * and renamed over it only when complete, so a failure leaves an existing
 * file untouched. RS_ERR_IO (cannot create/write/rename) or RS_ERR_INTERNAL
 * (a cairo error), with the message in err. Afterwards cairo's and
 * fontconfig's caches are released (cairo_debug_reset_static_data, FcFini):
 * call it when no other cairo drawing is in progress in the process. */
rs_status rs_plot_write(const char *path, rs_plot_format fmt, const rs_plot_data *d, rs_err *err);

#endif
