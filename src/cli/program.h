/* Host functions backed by host programs (program.c). */
#ifndef CAPSULE_CLI_PROGRAM_H
#define CAPSULE_CLI_PROGRAM_H

#include "capsule.h"

#include <cjson/cJSON.h>

typedef struct program_function program_function;

/* Adds the function `name` to `config`, run as `command` (split into
 * words without a shell) or, when `command` is NULL, as the JSON array of
 * strings `words`.  `timeout_seconds` (0: the call's) and `max_output`
 * (0: 64 MiB) cap each run.  The caller frees the result with
 * program_function_free after the config; NULL with a message in `error`
 * (CAP_ERROR_SIZE). */
program_function *program_function_add(cap_config *config, const char *name,
                                       const char *command, const cJSON *words,
                                       const char *description, const char *schema_json,
                                       double timeout_seconds, size_t max_output, char *error);
void program_function_free(program_function *program);

#endif
