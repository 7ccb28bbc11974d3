/* cli_eval_plot.c — the eval plot (cli_eval_plot.h): one cairo drawing,
 * rendered on an SVG, PNG or PDF surface.
 *
 * Layout (user units = SVG/PNG pixels = PDF points, 680 x 440): a white
 * page; the plot box at x 70..590, y 40..380; strong share 0..100 % along
 * x, quality along y over [min, max] of W, S, the oracle and the router's
 * points, padded 5 % each side; ticks every 10 %. Curves: the router's 11
 * points (blue polyline with dots), random routing (grey dashed, W to S),
 * the oracle (green). Legend at the lower right. */
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <errno.h>
#include <fontconfig/fontconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_eval_plot.h"

rs_plot_format rs_plot_format_of(const char *path) {
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot || strchr(dot, '/') || dot == path || dot[-1] == '/') return RS_PLOT_NONE;
    if (!strcasecmp(dot, ".svg")) return RS_PLOT_SVG;
    if (!strcasecmp(dot, ".png")) return RS_PLOT_PNG;
    if (!strcasecmp(dot, ".pdf")) return RS_PLOT_PDF;
    return RS_PLOT_NONE;
}

enum { X0 = 70, Y0 = 40, PW = 520, PH = 340 };

typedef struct frame {
    double lo, hi;
} frame;

static double px(double share) { return X0 + share / 100.0 * PW; }
static double py(const frame *f, double q) { return Y0 + PH - (q - f->lo) / (f->hi - f->lo) * PH; }

static void text_at(cairo_t *cr, double x, double y, const char *s, double align) {
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    cairo_move_to(cr, x - align * te.x_advance, y);
    cairo_show_text(cr, s);
}

static void set_rgb(cairo_t *cr, unsigned rgb) {
    cairo_set_source_rgb(cr, ((rgb >> 16) & 255) / 255.0, ((rgb >> 8) & 255) / 255.0, (rgb & 255) / 255.0);
}

#define BLUE 0x0000ffu
#define GREY 0x808080u
#define GREEN 0x008000u

/* The one drawing, whatever the surface. */
static void draw(cairo_t *cr, const rs_plot_data *d) {
    const rs_eval_result *r = d->res;
    const double W = r->weak_quality, S = r->strong_quality;
    frame f = {W < S ? W : S, W > S ? W : S};
    for (int k = 0; k <= RS_PLOT_ORACLE_STEPS; k++) {
        if (d->oracle[k] < f.lo) f.lo = d->oracle[k];
        if (d->oracle[k] > f.hi) f.hi = d->oracle[k];
    }
    for (int k = 0; k < RS_EVAL_EDGES; k++) {
        if (r->points[k].quality < f.lo) f.lo = r->points[k].quality;
        if (r->points[k].quality > f.hi) f.hi = r->points[k].quality;
    }
    const double pad = (f.hi - f.lo) * 0.05 + 1e-9;
    f.lo -= pad;
    f.hi += pad;

    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_source_rgb(cr, 0, 0, 0);
    char buf[256];
    cairo_set_font_size(cr, 14);
    snprintf(buf, sizeof buf, "%.200s: quality vs strong share (APGR %.3f)", d->title, r->apgr);
    text_at(cr, X0, 24, buf, 0);

    cairo_set_font_size(cr, 12);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, X0 + 0.5, Y0 + 0.5, PW, PH);
    cairo_stroke(cr);
    for (int t = 0; t <= 10; t++) {
        double s = t * 10.0, q = f.lo + (f.hi - f.lo) * t / 10.0;
        snprintf(buf, sizeof buf, "%g", s);
        text_at(cr, px(s), Y0 + PH + 16, buf, 0.5);
        snprintf(buf, sizeof buf, "%.2f", q);
        text_at(cr, X0 - 6, py(&f, q) + 4, buf, 1);
        cairo_move_to(cr, px(s), Y0 + PH);
        cairo_line_to(cr, px(s), Y0 + PH + 4);
        cairo_move_to(cr, X0 - 4, py(&f, q));
        cairo_line_to(cr, X0, py(&f, q));
        cairo_stroke(cr);
    }
    text_at(cr, X0 + PW / 2.0, Y0 + PH + 34, "strong share (%)", 0.5);
    cairo_save(cr);
    cairo_translate(cr, 16, Y0 + PH / 2.0);
    cairo_rotate(cr, -1.5707963267948966);
    text_at(cr, 0, 0, d->y_label, 0.5);
    cairo_restore(cr);

    /* the curves, clipped to the plot box */
    cairo_save(cr);
    cairo_rectangle(cr, X0, Y0, PW, PH);
    cairo_clip(cr);
    static const double dash[2] = {6, 4};
    set_rgb(cr, GREY);
    cairo_set_dash(cr, dash, 2, 0);
    cairo_move_to(cr, px(0), py(&f, W));
    cairo_line_to(cr, px(100), py(&f, S));
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    set_rgb(cr, GREEN);
    for (int k = 0; k <= RS_PLOT_ORACLE_STEPS; k++)
        cairo_line_to(cr, px(100.0 * k / RS_PLOT_ORACLE_STEPS), py(&f, d->oracle[k]));
    cairo_stroke(cr);
    set_rgb(cr, BLUE);
    cairo_set_line_width(cr, 2);
    for (int k = 0; k < RS_EVAL_EDGES; k++) cairo_line_to(cr, px(r->points[k].strong_share), py(&f, r->points[k].quality));
    cairo_stroke(cr);
    for (int k = 0; k < RS_EVAL_EDGES; k++) {
        cairo_new_sub_path(cr);
        cairo_arc(cr, px(r->points[k].strong_share), py(&f, r->points[k].quality), 3, 0, 6.283185307179586);
    }
    cairo_fill(cr);
    cairo_restore(cr);

    static const char *leg[3] = {"router", "random", "oracle"};
    static const unsigned col[3] = {BLUE, GREY, GREEN};
    cairo_set_line_width(cr, 2);
    for (int i = 0; i < 3; i++) {
        double y = Y0 + PH - 60 + i * 18.0;
        set_rgb(cr, col[i]);
        cairo_move_to(cr, X0 + PW - 110, y);
        cairo_line_to(cr, X0 + PW - 85, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, X0 + PW - 80, y + 4, leg[i], 0);
    }
}

static cairo_status_t write_fn(void *closure, const unsigned char *data, unsigned int len) {
    return fwrite(data, 1, len, (FILE *)closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static rs_status render(FILE *f, const char *path, rs_plot_format fmt, const rs_plot_data *d, rs_err *err) {
    cairo_surface_t *s = fmt == RS_PLOT_SVG   ? cairo_svg_surface_create_for_stream(write_fn, f, RS_PLOT_WIDTH, RS_PLOT_HEIGHT)
                         : fmt == RS_PLOT_PDF ? cairo_pdf_surface_create_for_stream(write_fn, f, RS_PLOT_WIDTH, RS_PLOT_HEIGHT)
                                              : cairo_image_surface_create(CAIRO_FORMAT_RGB24, RS_PLOT_WIDTH, RS_PLOT_HEIGHT);
    cairo_t *cr = cairo_create(s);
    draw(cr, d);
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    if (cs == CAIRO_STATUS_SUCCESS && fmt == RS_PLOT_PNG) cs = cairo_surface_write_to_png_stream(s, write_fn, f);
    cairo_surface_finish(s); /* SVG, PDF: the document is written here */
    if (cs == CAIRO_STATUS_SUCCESS) cs = cairo_surface_status(s);
    cairo_surface_destroy(s);
    if (cs == CAIRO_STATUS_WRITE_ERROR) return rs_errf(err, RS_ERR_IO, "write error on %s", path);
    if (cs != CAIRO_STATUS_SUCCESS) return rs_errf(err, RS_ERR_INTERNAL, "cairo: %s", cairo_status_to_string(cs));
    return RS_OK;
}

rs_status rs_plot_write(const char *path, rs_plot_format fmt, const rs_plot_data *d, rs_err *err) {
    if (fmt != RS_PLOT_SVG && fmt != RS_PLOT_PNG && fmt != RS_PLOT_PDF)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: not a plot format (.svg, .png, .pdf)", path);
    size_t n = strlen(path);
    char *tmp = malloc(n + 8);
    if (!tmp) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".XXXXXX", 8);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rs_status st = rs_errf(err, RS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    mode_t mask = umask(0); /* mkstemp's 0600 -> what fopen(path, "w") would give */
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask);
    FILE *f = fdopen(fd, "wb");
    rs_status st = f ? render(f, path, fmt, d, err) : rs_errf(err, RS_ERR_IO, "cannot write %s", path);
    if (!f) close(fd);
    if (f) {
        int bad = ferror(f);
        if (((fclose(f) != 0) | (bad != 0)) && st == RS_OK) st = rs_errf(err, RS_ERR_IO, "write error on %s", path);
    }
    if (st == RS_OK && rename(tmp, path) != 0) st = rs_errf(err, RS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (st != RS_OK) unlink(tmp);
    free(tmp);
    /* Release cairo's font caches and fontconfig's (both re-initialise on
     * the next use): what a plot leaves behind is freed, not leaked. */
    cairo_debug_reset_static_data();
    FcFini();
    return st;
}
