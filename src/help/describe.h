/*
 * describe.h — `describe`: a file and a question to a configured model
 * endpoint (OpenAI-compatible chat/completions or Anthropic's Messages
 * API), the answer as text.
 */
#ifndef CAPSULE_DESCRIBE_H
#define CAPSULE_DESCRIBE_H

#include <stddef.h>

#include "capsule.h"

#define DESCRIBE_MAX_FILE_BYTES (8u << 20)
/* An image is sent only up to these (Anthropic's advice: a longer side
 * is scaled down by the provider anyway; its limit is 5 MB an image). */
#define DESCRIBE_MAX_IMAGE_SIDE 1568
#define DESCRIBE_MAX_IMAGE_BYTES (5u << 20)

/* The fixed program (an expression) that reads a session's file for the
 * MCP tool, downscaling a large image with the guest's Pillow: evaluated
 * with __capsule_arguments__ = {"path": PATH}, its value is {"base64":
 * BYTES} (and "downscaled": [w, h, new w, new h]), {"size": N} (too
 * large) or {"error": WHY}. */
extern const char describe_read_program[];

typedef enum describe_outcome {
    DESCRIBE_OK,
    DESCRIBE_OFF,     /* no endpoint is configured */
    DESCRIBE_INVALID, /* the question or the file: too large, empty, an unknown media type */
    DESCRIBE_TIMEOUT,
    DESCRIBE_FAILED,  /* the endpoint failed or answered no text */
} describe_outcome;

/* Sends `size` bytes of `data` (named `name`, which is only shown to the
 * model) with `question` to the config's endpoint, within
 * `timeout_seconds` (0: 120 s).  DESCRIBE_OK and *json ({"answer",
 * "media_type", "model"}; the caller frees it), else the kind of failure
 * and `error`. */
describe_outcome describe_file(cap_config *config, const void *data, size_t size,
                               const char *name, const char *question, double timeout_seconds,
                               char **json, char *error);

#endif
