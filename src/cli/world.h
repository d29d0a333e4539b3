/* Options for the guest's world: mounts, resources, docs, artifacts. */
#ifndef CAPSULE_CLI_WORLD_H
#define CAPSULE_CLI_WORLD_H

#include "capsule.h"

#include <cjson/cJSON.h>

#include "program.h"

#define MAX_PROGRAM_FUNCTIONS 256

typedef struct file_settings {
    cJSON *json; /* kept until the end: strings in it are used by the config */
    const char *output_dir;
    double http_timeout;
    uint64_t http_max;
    const char *package_cache;
    const char *start_cache; /* --start-cache: a directory, "none", or NULL (the default) */
    int package_sources;
} file_settings;

typedef struct world_settings {
    file_settings settings; /* from --config */
    const char *output_dir; /* --output-dir: where `run` writes artifacts */
    const char *package_cache;
    const char *start_cache; /* --start-cache: a directory, "none", or NULL (the default) */
    int package_sources;
    double http_timeout;
    uint64_t http_max;
    program_function *programs[MAX_PROGRAM_FUNCTIONS]; /* --function and "functions": freed
                                                          after the config */
    int program_count;
} world_settings;

extern const char world_options_usage[];

/* True for the options parse_world_option handles (all take a value). */
int is_world_option(const char *arg);
/* 1 if `arg` was one (applied to `config` or `world`), 0 if not, -1 after
 * printing what is wrong. */
int parse_world_option(const char *arg, const char *value, cap_config *config,
                       world_settings *world);
/* Applies what is only known once every option is read: 0 or -1. */
int finish_world_options(cap_config *config, world_settings *world);
void free_world_options(world_settings *world);

#endif
