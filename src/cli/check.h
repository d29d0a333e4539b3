/* check.h — `capsule check`, the five-test protocol (see check.c). */
#ifndef CAP_CLI_CHECK_H
#define CAP_CLI_CHECK_H

#include "capsule.h"

/* Runs every attempt; prints a table (unless quiet) and a summary line.
 * Returns the process exit status: 0 if every wall held. */
int capsule_check(cap_config *config, int quiet);

#endif
