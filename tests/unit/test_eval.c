/* test_eval.c — unit tests of eval.c (RouteLLM's metrics) and csv.c on small
 * hand-computed cases; the numpy.interp values on a non-monotone xp were
 * taken from numpy 2.4 (np.interp(x, [0,2,1,3,4,5,3,7,8,9,10], range(11))).
 * Also the score-file join of eval_scores.c: prompt and id joins,
 * duplicates, bounds of "id", bad lines, buffers without a NUL. */
#include <math.h>
#include <string.h>

#include "csv.h"
#include "eval.h"
#include "eval_scores.h"
#include "test_util.h"

static int near(double a, double b) { return fabs(a - b) <= 1e-9 * (1 + fabs(b)); }

static void test_quantile(void) {
    const double v[4] = {1, 2, 3, 4};
    CHECK(near(rs_eval_quantile_sorted(v, 4, 0.0), 1));
    CHECK(near(rs_eval_quantile_sorted(v, 4, 0.1), 1.3));
    CHECK(near(rs_eval_quantile_sorted(v, 4, 0.5), 2.5));
    CHECK(near(rs_eval_quantile_sorted(v, 4, 0.7), 3.1));
    CHECK(near(rs_eval_quantile_sorted(v, 4, 1.0), 4));
    const double one[1] = {7};
    CHECK(rs_eval_quantile_sorted(one, 1, 0.3) == 7);
}

static void test_interp(void) {
    const double xp3[3] = {1, 2, 3}, fp3[3] = {10, 20, 30};
    CHECK(near(rs_eval_np_interp(2.5, xp3, fp3, 3), 25));
    CHECK(rs_eval_np_interp(0, xp3, fp3, 3) == 10);
    CHECK(rs_eval_np_interp(5, xp3, fp3, 3) == 30);
    const double xp[11] = {0, 2, 1, 3, 4, 5, 3, 7, 8, 9, 10};
    double fp[11];
    for (int i = 0; i < 11; i++) fp[i] = i;
    const double x[8] = {1.5, 2.5, 3.5, 6, 9.5, -1, 11, 3};
    const double want[8] = {0.75, 2.75, 6.125, 6.75, 9.5, 0, 10, 6};
    for (int i = 0; i < 8; i++)
        CHECK_MSG(near(rs_eval_np_interp(x[i], xp, fp, 11), want[i]), "x=%g got %.17g want %g", x[i],
                  rs_eval_np_interp(x[i], xp, fp, 11), want[i]);
}

static void test_run(void) {
    /* A: weak wrong, strong right, score 0.9; B: both wrong, 0.5; C: both
     * right, 0.1. W = 100/3, S = 200/3. Points (share, quality): (0, W),
     * 4 x (100/3, S), 5 x (200/3, S), (100, S). AUC = 50/3 + 2 * 200/9;
     * APGR = 5/6; CPT50 = 50/3 (slope 1 between the first two points),
     * CPT80 = 80/3. */
    const rs_eval_item items[3] = {{0, 1, 1, 1}, {0, 1, 0, 1}, {1, 1, 1, 1}};
    const double scores[3] = {0.9, 0.5, 0.1};
    rs_eval_result r;
    rs_err err = {{0}};
    CHECK(rs_eval_run(items, scores, 3, 100, &r, &err) == RS_OK);
    CHECK(near(r.weak_quality, 100.0 / 3));
    CHECK(near(r.strong_quality, 200.0 / 3));
    CHECK(r.points[0].strong_share == 0 && near(r.points[0].quality, 100.0 / 3));
    CHECK(near(r.points[0].edge, 0.9));
    for (int k = 1; k <= 4; k++) CHECK(near(r.points[k].strong_share, 100.0 / 3));
    for (int k = 5; k <= 9; k++) CHECK(near(r.points[k].strong_share, 200.0 / 3));
    CHECK(near(r.points[10].strong_share, 100) && near(r.points[10].edge, 0.1));
    CHECK(near(r.auc, 50.0 / 3 + 400.0 / 9));
    CHECK_MSG(near(r.apgr, 5.0 / 6), "apgr %.17g", r.apgr);
    CHECK_MSG(near(r.cpt50, 50.0 / 3), "cpt50 %.17g", r.cpt50);
    CHECK_MSG(near(r.cpt80, 80.0 / 3), "cpt80 %.17g", r.cpt80);

    /* Edge at exactly 0.5 (q = 0.5, virtual index 1): B is routed strong. */
    CHECK(near(r.points[9].edge, 0.5));

    /* Constant scores: every edge is the score; >= sends all strong, the last
     * edge (>) none: the straight line, APGR 0.5. */
    const double flat[3] = {0.3, 0.3, 0.3};
    CHECK(rs_eval_run(items, flat, 3, 100, &r, &err) == RS_OK);
    CHECK(near(r.apgr, 0.5) && near(r.cpt50, 50) && near(r.cpt80, 80));

    /* Multi-row items (MT-Bench): quality is over rows, share over rows. */
    const rs_eval_item mt[2] = {{8 + 6, 2, 9 + 9, 2}, {10, 1, 7 + 7, 2}};
    const unsigned char sel[2] = {1, 0};
    double share;
    CHECK(near(rs_eval_quality(mt, sel, 2, 1, &share), (18.0 + 10) / 3));
    CHECK(near(share, 200.0 / 3));

    const double bad[3] = {0.1, NAN, 0.2};
    CHECK(rs_eval_run(items, bad, 3, 100, &r, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_eval_run(items, scores, 0, 100, &r, &err) == RS_ERR_INVALID_ARG);
}

static void test_oracle(void) {
    const rs_eval_item items[3] = {{0, 1, 1, 1}, {0, 1, 0, 1}, {1, 1, 1, 1}};
    double scratch[3];
    CHECK(near(rs_eval_oracle_quality(items, 3, 100, 0, scratch), 100.0 / 3));
    CHECK(near(rs_eval_oracle_quality(items, 3, 100, 1.0 / 6, scratch), 50));
    CHECK(near(rs_eval_oracle_quality(items, 3, 100, 1.0 / 3, scratch), 200.0 / 3));
    CHECK(near(rs_eval_oracle_quality(items, 3, 100, 1.0, scratch), 200.0 / 3));
}

static void test_csv(void) {
    const char *text = "a,\"b,c\",\"d\"\"e\"\r\n\"multi\nline\",,x\nlast";
    rs_csv c;
    rs_csv_field f[4];
    size_t n;
    rs_err err = {{0}};
    rs_csv_init(&c, text, strlen(text));
    CHECK(rs_csv_next(&c, f, 4, &n, &err) == RS_OK && n == 3);
    CHECK(n == 3 && !strcmp(f[0].s, "a") && !strcmp(f[1].s, "b,c") && !strcmp(f[2].s, "d\"e") && f[2].len == 3);
    CHECK(rs_csv_next(&c, f, 4, &n, &err) == RS_OK && n == 3);
    CHECK(n == 3 && !strcmp(f[0].s, "multi\nline") && f[1].len == 0 && !strcmp(f[2].s, "x"));
    CHECK(c.line == 4);
    CHECK(rs_csv_next(&c, f, 4, &n, &err) == RS_OK && n == 1 && !strcmp(f[0].s, "last"));
    CHECK(rs_csv_next(&c, f, 4, &n, &err) == RS_OK && n == 0);
    rs_csv_free(&c);

    const char *bad[] = {"\"unterminated", "\"a\"b,c\n", "a,b,c,d,e\n", "ab\"c\n", "\"a\"\r"};
    const rs_status want[] = {RS_ERR_FORMAT, RS_ERR_FORMAT, RS_ERR_FORMAT, RS_ERR_FORMAT, RS_OK};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rs_csv_init(&c, bad[i], strlen(bad[i]));
        rs_status st = rs_csv_next(&c, f, 4, &n, &err);
        CHECK_MSG(st == want[i], "case %zu: status %d", i, st);
        rs_csv_free(&c);
    }
    /* Trailing newline: no empty record; an empty input: none at all. */
    rs_csv_init(&c, "x\n", 2);
    CHECK(rs_csv_next(&c, f, 4, &n, &err) == RS_OK && n == 1);
    CHECK(rs_csv_next(&c, f, 4, &n, &err) == RS_OK && n == 0);
    rs_csv_free(&c);
    rs_csv_init(&c, "", 0);
    CHECK(rs_csv_next(&c, f, 4, &n, &err) == RS_OK && n == 0);
    rs_csv_free(&c);
}

static void test_scores(void) {
    const char *rows[4] = {"a", "dup", "dup", "c"};
    rs_eval_join *j;
    rs_err err;
    CHECK(rs_eval_join_open(rows, 4, &j, &err) == RS_OK);
    const char *text = "{\"prompt\":\"dup\",\"win_prob\":0.25}\n"
                       "\r\n"
                       "{\"id\":0,\"win_prob\":0.5}\n"
                       "{\"id\":3,\"win_prob\":1}\n"
                       "{\"id\":3,\"win_prob\":0.75}\n" /* overwrites */
                       "{\"id\":4,\"win_prob\":0.1}\n"  /* past the rows: unmatched */
                       "{\"id\":-1,\"win_prob\":0.1}\n"
                       "{\"id\":1e300,\"win_prob\":0.1}\n"
                       "{\"prompt\":\"nope\",\"id\":0,\"win_prob\":0.9}"; /* prompt first; no final LF */
    CHECK(rs_eval_join_text(j, text, strlen(text), &err) == RS_OK);
    CHECK(rs_eval_join_unmatched(j) == 4);
    double sc[4];
    size_t miss = 9, first = 9;
    CHECK(rs_eval_join_scores(j, sc, 4, &miss, &first, &err) == RS_OK && miss == 0);
    CHECK(sc[0] == 0.5 && sc[1] == 0.25 && sc[2] == 0.25 && sc[3] == 0.75);
    CHECK(rs_eval_join_scores(j, sc, 3, NULL, NULL, &err) == RS_ERR_INVALID_ARG);
    /* bad lines join nothing and say why; the buffer is read only within len */
    static const char *bad[] = {"{\"prompt\":\"a\"}", "not json", "{\"id\":1.5,\"win_prob\":0.2}",
                                "{\"prompt\":3,\"win_prob\":0.1}", "{\"id\":0,\"win_prob\":\"x\"}",
                                "{\"prompt\":\"a\\u0000\",\"win_prob\":0.1}", "{\"id\":0,\"win_prob\":1e999}",
                                "[1,2]", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rs_status st = rs_eval_join_line(j, bad[i], strlen(bad[i]), &err);
        CHECK_MSG(st == RS_ERR_FORMAT || st == RS_ERR_UTF8, "bad line %zu: status %d", i, st);
    }
    CHECK(rs_eval_join_scores(j, sc, 4, NULL, NULL, &err) == RS_OK && sc[0] == 0.5);
    char buf[40] = "{\"id\":1,\"win_prob\":0.125}XXXX"; /* len stops before the junk */
    CHECK(rs_eval_join_line(j, buf, 25, &err) == RS_OK);
    /* by id: that row only, not its duplicate text */
    CHECK(rs_eval_join_scores(j, sc, 4, NULL, NULL, &err) == RS_OK && sc[1] == 0.125 && sc[2] == 0.25);
    CHECK(rs_eval_join_text(j, "{\"id\":0,\"win_prob\":1}\nbad\n", 26, &err) == RS_ERR_FORMAT &&
          !strncmp(err.msg, "line 2:", 7));
    rs_eval_join_free(j);
    /* rows left without a score */
    CHECK(rs_eval_join_open(rows, 4, &j, &err) == RS_OK);
    CHECK(rs_eval_join_line(j, "{\"prompt\":\"c\",\"win_prob\":0}", 27, &err) == RS_OK);
    CHECK(rs_eval_join_scores(j, sc, 4, &miss, &first, &err) == RS_ERR_NOT_FOUND && miss == 3 && first == 0);
    CHECK(strstr(err.msg, "3 of 4 rows have no score") != NULL);
    rs_eval_join_free(j);
    /* no rows: everything unmatched, nothing missing */
    CHECK(rs_eval_join_open(NULL, 0, &j, &err) == RS_OK);
    CHECK(rs_eval_join_line(j, "{\"id\":0,\"win_prob\":1}", 21, &err) == RS_OK && rs_eval_join_unmatched(j) == 1);
    CHECK(rs_eval_join_scores(j, sc, 0, NULL, NULL, &err) == RS_OK);
    rs_eval_join_free(j);
}

int main(void) {
    test_quantile();
    test_interp();
    test_run();
    test_oracle();
    test_csv();
    test_scores();
    return test_done("test_eval");
}
