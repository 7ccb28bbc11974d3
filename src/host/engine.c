/* placeholder: being written (replace wholesale). */
#include <math.h>
#include "engine.h"
void rs_engine_opts_default(rs_engine_opts *o) { o->n_threads = 0; o->max_batch_tokens = 0; o->max_tokens = 0; o->backend = "cpu"; }
rs_status rs_engine_open(const char *dir, const rs_engine_opts *opts, rs_engine **out, rs_err *err) { (void)opts; (void)out; return rs_errf(err, RS_ERR_UNSUPPORTED, "%s: engine not built yet", dir); }
void rs_engine_close(rs_engine *e) { (void)e; }
void rs_engine_info(const rs_engine *e, rs_router_info *out) { (void)e; (void)out; }
rs_status rs_engine_score(rs_engine *e, const char *const *p, const size_t *l, size_t n, float t, rs_score *o, rs_err *err) { (void)e;(void)p;(void)l;(void)n;(void)t;(void)o; return rs_errf(err, RS_ERR_UNSUPPORTED, "not built"); }
rs_status rs_engine_embed(rs_engine *e, const char *const *p, const size_t *l, size_t n, float *em, rs_score *m, rs_err *err) { (void)e;(void)p;(void)l;(void)n;(void)em;(void)m; return rs_errf(err, RS_ERR_UNSUPPORTED, "not built"); }
