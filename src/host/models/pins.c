/* pins.c — sha256 pins of a router's files (see pins.h). The digests are
 * OpenSSL's (libcrypto EVP); files are read in 1 MiB blocks, so a pinned
 * 500 MB model costs about a second at open and no memory. */
#include "pins.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "file.h"
#include "manifest.h"

static void to_hex(const unsigned char *d, unsigned n, char hex[RS_SHA256_HEX]) {
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n && i < 32; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = 0;
}

static rs_status digest_bytes(const void *p, size_t n, char hex[RS_SHA256_HEX], rs_err *err) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dn = 0;
    if (!EVP_Digest(p, n, d, &dn, EVP_sha256(), NULL) || dn != 32)
        return rs_errf(err, RS_ERR_INTERNAL, "sha256 failed");
    to_hex(d, dn, hex);
    return RS_OK;
}

rs_status rs_pins_sha256_file(const char *path, char hex[RS_SHA256_HEX], rs_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return rs_errf(err, errno == ENOENT ? RS_ERR_NOT_FOUND : RS_ERR_IO, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 20);
    rs_status st = RS_OK;
    if (!ctx || !buf) st = rs_errf(err, RS_ERR_NOMEM, "%s: no memory to hash it", path);
    else if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) st = rs_errf(err, RS_ERR_INTERNAL, "sha256 init failed");
    for (size_t k; st == RS_OK && (k = fread(buf, 1, 1 << 20, f)) > 0;)
        if (!EVP_DigestUpdate(ctx, buf, k)) st = rs_errf(err, RS_ERR_INTERNAL, "sha256 failed");
    if (st == RS_OK && ferror(f)) st = rs_errf(err, RS_ERR_IO, "%s: read error", path);
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dn = 0;
    if (st == RS_OK && (!EVP_DigestFinal_ex(ctx, d, &dn) || dn != 32)) st = rs_errf(err, RS_ERR_INTERNAL, "sha256 failed");
    if (st == RS_OK) to_hex(d, dn, hex);
    EVP_MD_CTX_free(ctx);
    free(buf);
    fclose(f);
    return st;
}

rs_status rs_pins_manifest_digest(const cJSON *manifest, char hex[RS_SHA256_HEX], rs_err *err) {
    cJSON *copy = cJSON_Duplicate(manifest, 1);
    if (!copy) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    /* what decides the scores is pinned; the pins themselves, the names and
     * the decision threshold (calibrate, SIGHUP reloads, hand edits) are not */
    static const char *const free_keys[] = {"sha256", "threshold", "name", "strong_model", "weak_model"};
    for (size_t i = 0; i < sizeof free_keys / sizeof *free_keys; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(copy, free_keys[i]);
    char *text = cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    if (!text) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    rs_status st = digest_bytes(text, strlen(text), hex, err);
    free(text);
    return st;
}

static int is_hex64(const char *s) {
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F'))) return 0;
    return i == 64;
}

rs_status rs_pins_check(const char *router_dir, const rs_manifest *m, rs_err *err) {
    const cJSON *pins = m->sha256, *manifest = m->json;
    if (!pins) return RS_OK;
    for (const cJSON *k = manifest->child; k; k = k->next)
        if (!rs_manifest_known_key(k->string))
            return rs_errf(err, RS_ERR_FORMAT,
                           "%s/routescore.json: unknown key '%.64s' in a pinned manifest (a typo would silently "
                           "fall back to a default)", router_dir, k->string);
    for (const cJSON *p = pins->child; p; p = p->next) {
        if (!cJSON_IsString(p) || !is_hex64(p->valuestring) || !p->string[0])
            return rs_errf(err, RS_ERR_FORMAT, "%s/routescore.json: sha256 pin of '%.200s' is not 64 hex digits",
                           router_dir, p->string);
        char got[RS_SHA256_HEX], path[4200];
        rs_status st;
        if (!strcmp(p->string, "routescore.json")) {
            st = rs_pins_manifest_digest(manifest, got, err);
        } else {
            st = rs_path_join(path, sizeof path, router_dir, p->string, err);
            if (st == RS_OK) st = rs_pins_sha256_file(path, got, err);
            if (st != RS_OK)
                return rs_errf(err, st, "%s/routescore.json: pinned file: %s", router_dir, err->msg);
        }
        if (st != RS_OK) return st;
        if (strcasecmp(got, p->valuestring))
            return rs_errf(err, RS_ERR_FORMAT,
                           "%s/routescore.json: sha256 of '%.200s' is %.12s..., pinned %.12s...: the file changed or "
                           "is corrupt", router_dir, p->string, got, p->valuestring);
    }
    return RS_OK;
}

rs_status rs_pins_update_manifest(cJSON *manifest, rs_err *err) {
    cJSON *pins = cJSON_GetObjectItemCaseSensitive(manifest, "sha256");
    if (!cJSON_IsObject(pins)) return RS_OK;
    char hex[RS_SHA256_HEX];
    rs_status st = rs_pins_manifest_digest(manifest, hex, err);
    if (st != RS_OK) return st;
    cJSON *s = cJSON_CreateString(hex);
    if (!s) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    if (cJSON_GetObjectItemCaseSensitive(pins, "routescore.json")) cJSON_ReplaceItemInObjectCaseSensitive(pins, "routescore.json", s);
    else cJSON_AddItemToObject(pins, "routescore.json", s);
    return RS_OK;
}
