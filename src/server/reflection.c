/* reflection.c — see reflection.h. The descriptor set is read with a few
 * lines of protobuf wire format rather than a generated descriptor.proto:
 * only four fields of it matter here. */
#include "reflection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1alpha/reflection.pb-c.h"

#define MAX_FILES 16
#define MAX_SERVICES 16

typedef struct file_entry {
    const uint8_t *data; /* serialized FileDescriptorProto (points into the set) */
    size_t len;
    char name[256];
    char package[128];
} file_entry;

struct rs_reflect {
    size_t n_files, n_services;
    file_entry files[MAX_FILES];
    char services[MAX_SERVICES][256];
};

/* Wire format: varint; returns 0 on truncation. */
static int rd_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/* Iterates length-delimited fields: returns 1 with field number and bytes,
 * skipping other wire types; 0 at the end; -1 on malformed input. */
static int next_len_field(const uint8_t **p, const uint8_t *end, uint32_t *field, const uint8_t **data, size_t *len) {
    while (*p < end) {
        uint64_t key, v;
        if (!rd_varint(p, end, &key)) return -1;
        uint32_t wt = (uint32_t)(key & 7);
        *field = (uint32_t)(key >> 3);
        switch (wt) {
        case 0:
            if (!rd_varint(p, end, &v)) return -1;
            break;
        case 1:
            if (end - *p < 8) return -1;
            *p += 8;
            break;
        case 5:
            if (end - *p < 4) return -1;
            *p += 4;
            break;
        case 2:
            if (!rd_varint(p, end, &v) || v > (uint64_t)(end - *p)) return -1;
            *data = *p;
            *len = (size_t)v;
            *p += v;
            return 1;
        default: return -1;
        }
    }
    return 0;
}

static void copy_bytes(char *dst, size_t n, const uint8_t *src, size_t len) {
    if (len >= n) len = n - 1;
    memcpy(dst, src, len);
    dst[len] = 0;
}

rs_status rs_reflect_init(const uint8_t *fds, size_t n, rs_reflect **out, rs_err *err) {
    rs_reflect *r = calloc(1, sizeof *r);
    if (!r) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    const uint8_t *p = fds, *end = fds + n, *d;
    size_t len;
    uint32_t f;
    int k;
    while ((k = next_len_field(&p, end, &f, &d, &len)) == 1) {
        if (f != 1) continue;
        if (r->n_files == MAX_FILES) break;
        file_entry *fe = &r->files[r->n_files++];
        fe->data = d;
        fe->len = len;
        const uint8_t *q = d, *qe = d + len, *fd;
        size_t fl;
        uint32_t ff;
        int kk;
        while ((kk = next_len_field(&q, qe, &ff, &fd, &fl)) == 1) {
            if (ff == 1) copy_bytes(fe->name, sizeof fe->name, fd, fl);
            if (ff == 2) copy_bytes(fe->package, sizeof fe->package, fd, fl);
            if (ff == 6 && r->n_services < MAX_SERVICES) { /* ServiceDescriptorProto: name = 1 */
                const uint8_t *s = fd, *se = fd + fl, *sd;
                size_t sl;
                uint32_t sf;
                while (next_len_field(&s, se, &sf, &sd, &sl) == 1)
                    if (sf == 1) {
                        char nm[128], pkg[128], full[256];
                        copy_bytes(nm, sizeof nm, sd, sl);
                        memcpy(pkg, fe->package, sizeof pkg);
                        snprintf(full, sizeof full, "%s%s%s", pkg, pkg[0] ? "." : "", nm);
                        memcpy(r->services[r->n_services++], full, sizeof full);
                        break;
                    }
            }
        }
        if (kk < 0) k = -1;
    }
    if (k < 0 || r->n_files == 0) {
        free(r);
        return rs_errf(err, RS_ERR_FORMAT, "embedded descriptor set is malformed");
    }
    *out = r;
    return RS_OK;
}

void rs_reflect_free(rs_reflect *r) { free(r); }

static const file_entry *find_symbol(const rs_reflect *r, const char *sym) {
    const file_entry *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < r->n_files; i++) {
        const file_entry *f = &r->files[i];
        size_t pl = strlen(f->package);
        if (!strncmp(sym, f->package, pl) && (sym[pl] == '.' || sym[pl] == 0) && (!best || pl > best_len)) {
            best = f;
            best_len = pl;
        }
    }
    return best;
}

rs_status rs_reflect_answer(const rs_reflect *r, const uint8_t *req_data, size_t n, uint8_t **resp, size_t *resp_len,
                            rs_err *err) {
    Grpc__Reflection__V1alpha__ServerReflectionRequest *req =
        grpc__reflection__v1alpha__server_reflection_request__unpack(NULL, n, req_data);
    if (!req) return rs_errf(err, RS_ERR_FORMAT, "malformed ServerReflectionRequest");
    Grpc__Reflection__V1alpha__ServerReflectionResponse out = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__FileDescriptorResponse fdr = GRPC__REFLECTION__V1ALPHA__FILE_DESCRIPTOR_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__ListServiceResponse lsr = GRPC__REFLECTION__V1ALPHA__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__ErrorResponse er = GRPC__REFLECTION__V1ALPHA__ERROR_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__ServiceResponse svc[MAX_SERVICES];
    Grpc__Reflection__V1alpha__ServiceResponse *svcp[MAX_SERVICES];
    ProtobufCBinaryData file_bytes;
    char msg[512];
    out.valid_host = req->host;
    out.original_request = req;
    const file_entry *fe = NULL;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        for (size_t i = 0; i < r->n_services; i++) {
            grpc__reflection__v1alpha__service_response__init(&svc[i]);
            svc[i].name = (char *)r->services[i];
            svcp[i] = &svc[i];
        }
        lsr.n_service = r->n_services;
        lsr.service = svcp;
        out.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        out.list_services_response = &lsr;
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        for (size_t i = 0; i < r->n_files && !fe; i++)
            if (!strcmp(r->files[i].name, req->file_by_filename)) fe = &r->files[i];
        if (!fe) snprintf(msg, sizeof msg, "file not found: %.400s", req->file_by_filename);
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        fe = find_symbol(r, req->file_containing_symbol);
        if (!fe) snprintf(msg, sizeof msg, "symbol not found: %.400s", req->file_containing_symbol);
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        snprintf(msg, sizeof msg, "this server's protos declare no extensions");
        break;
    default:
        snprintf(msg, sizeof msg, "empty or unknown reflection request");
        break;
    }
    if (fe) {
        file_bytes.data = (uint8_t *)fe->data;
        file_bytes.len = fe->len;
        fdr.n_file_descriptor_proto = 1;
        fdr.file_descriptor_proto = &file_bytes;
        out.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
        out.file_descriptor_response = &fdr;
    } else if (out.message_response_case == GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET) {
        er.error_code = 5; /* NOT_FOUND */
        er.error_message = msg;
        out.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        out.error_response = &er;
    }
    size_t len = grpc__reflection__v1alpha__server_reflection_response__get_packed_size(&out);
    uint8_t *buf = malloc(len ? len : 1);
    rs_status st = RS_OK;
    if (!buf)
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
    else {
        grpc__reflection__v1alpha__server_reflection_response__pack(&out, buf);
        *resp = buf;
        *resp_len = len;
    }
    grpc__reflection__v1alpha__server_reflection_request__free_unpacked(req, NULL);
    return st;
}
