/* fuzz_srv_config.c — the server's config file (srv_config.c, YAML through
 * yaml_json.c): the first byte picks .json or .yaml, the rest is the file;
 * a config that loads is validated and its thresholds read, as serve does. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "srv_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 1) return 0;
    const char *path = rs_fuzz_file(0, data[0] & 1 ? "serve.yaml" : "serve.json", data + 1, n - 1);
    rs_srv_config *c = malloc(sizeof *c);
    if (!c) return 0;
    rs_srv_config_default(c);
    rs_err err;
    if (rs_srv_config_load(path, c, &err) == RS_OK && rs_srv_config_validate(c, &err) == RS_OK) {
        float th[RS_SRV_MAX_ROUTERS];
        (void)rs_srv_config_thresholds(c, th, &err);
        for (int i = 0; i < c->n_routers; i++) (void)rs_srv_replicas(&c->routers[i]);
    }
    free(c);
    return 0;
}
