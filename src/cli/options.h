/* Command-line options shared by `capsule run` and `capsule serve`. */
#ifndef CAPSULE_CLI_OPTIONS_H
#define CAPSULE_CLI_OPTIONS_H

#include "capsule.h"

#define EXIT_USAGE 2

/* True for the options parse_shared_option handles (all take a value). */
int is_shared_option(const char *arg);

/* Applies a configuration or limit option (--stdlib, --image, --env,
 * --timeout, --cpu-time, --memory, --max-output, --disk): 1 if `arg` was
 * one, 0 if not, -1 after printing what is wrong with `value`. */
int parse_shared_option(const char *arg, const char *value, cap_config *config,
                        cap_limits *limits);

/* "512M", "2G", "1048576" -> bytes; 0 on error. */
uint64_t parse_size(const char *text);

/* A positive number of seconds; 0 on error. */
double parse_seconds(const char *text);

/* A whole stream or file; NULL on error (errno set). */
#include <stdio.h>
char *read_stream(FILE *stream, size_t *size);
char *read_file(const char *path, size_t *size);

/* Set when --store was given (parse_shared_option). */
extern int store_option_given;

/* Opens the default store, sqlite:$XDG_STATE_HOME/capsule/sessions.db (or
 * ~/.local/state/...), creating its directory: CAP_OK or an error. */
int open_default_store(cap_config *config, char *error);

/* Applies --store-quota once a store is open: CAP_OK or an error. */
int finish_store_options(cap_config *config, char *error);

/* Lines of the usage text that describe the shared options. */
extern const char shared_options_usage[];

#endif
