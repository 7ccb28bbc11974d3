/* reflection.h — answers for the gRPC server reflection protocol.
 *
 * The build embeds a FileDescriptorSet of the service's .proto files
 * (protoc-c --descriptor_set_out; proto_fds.c in the build tree). At start-up
 * rs_reflect_init splits it into its FileDescriptorProtos and notes each
 * file's name, package and services; rs_reflect_answer then turns one
 * serialized ServerReflectionRequest into a serialized response:
 *   list_services           every service in the set
 *   file_by_filename        that file
 *   file_containing_symbol  the file whose package prefixes the symbol
 *   extensions              NOT_FOUND error responses (there are none)
 * The protos import nothing, so no dependency closure is needed.
 * Immutable after init: thread-safe. */
#ifndef RS_REFLECTION_H
#define RS_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct rs_reflect rs_reflect;

rs_status rs_reflect_init(const uint8_t *fds, size_t n, rs_reflect **out, rs_err *err);
void rs_reflect_free(rs_reflect *r);
/* RS_ERR_FORMAT when req is not a ServerReflectionRequest. *resp is malloc'd. */
rs_status rs_reflect_answer(const rs_reflect *r, const uint8_t *req, size_t n, uint8_t **resp, size_t *resp_len,
                            rs_err *err);

#endif
