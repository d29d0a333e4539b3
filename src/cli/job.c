/*
 * `capsule job submit|get|cancel|list|emit`: durable jobs in a store
 * (docs/scale-out.md, "Jobs"), for operators and scripts; the jobs run in
 * whichever `capsule serve` shares the store.  Each command prints JSON on
 * stdout (a job, or a list of them) and exits 0, or prints the reason on
 * stderr and exits 1 (2 for a usage error).
 *
 * An SQLite store belongs to one process at a time: while a server has it
 * open these commands get "in use"; PostgreSQL stores are shared.
 */
#include "job.h"

#include "capsule.h"
#include "options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char job_usage[] =
    "usage: capsule job submit [--queue Q] [--key K] [--max-attempts N] [--timeout S]\n"
    "                          [--backoff S] (-c CODE | FILE | -)\n"
    "       capsule job get ID | cancel ID | list [--status S] [--limit N]\n"
    "       capsule job emit NAME [PAYLOAD_JSON]\n"
    "  --store URL       the store (default: this user's, as `capsule serve` uses)\n"
    "  --principal P     whose jobs (default: \"\"; get, cancel and list: anyone's)\n";

/* The whole of FILE ("-": stdin), malloc'd, or NULL. */
static char *read_all(const char *path) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return NULL;
    size_t size = 0, capacity = 4096;
    char *data = malloc(capacity);
    for (size_t n; data && (n = fread(data + size, 1, capacity - size - 1, f)) > 0;) {
        size += n;
        if (capacity - size < 2) {
            char *grown = realloc(data, capacity *= 2);
            if (!grown) free(data);
            data = grown;
        }
    }
    if (f != stdin) fclose(f);
    if (data) data[size] = '\0';
    return data;
}

int command_job(int argc, char **argv) {
    if (argc < 1) {
        fputs(job_usage, stderr);
        return EXIT_USAGE;
    }
    const char *verb = argv[0], *store = NULL, *principal = NULL, *status = NULL;
    const char *positional[2] = {NULL, NULL};
    int positional_count = 0;
    char *code = NULL;
    cap_job_options options = {0};
    long limit = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = arg[0] == '-' && arg[1] == '-';
        if ((takes || strcmp(arg, "-c") == 0) && !value) {
            fprintf(stderr, "capsule: %s needs a value\n", arg);
            free(code);
            return EXIT_USAGE;
        }
        if (strcmp(arg, "--store") == 0) store = value;
        else if (strcmp(arg, "--principal") == 0) principal = value;
        else if (strcmp(arg, "--status") == 0) status = value;
        else if (strcmp(arg, "--queue") == 0) options.queue = value;
        else if (strcmp(arg, "--key") == 0) options.idempotency_key = value;
        else if (strcmp(arg, "--max-attempts") == 0) options.max_attempts = atoi(value);
        else if (strcmp(arg, "--timeout") == 0) options.timeout_seconds = atof(value);
        else if (strcmp(arg, "--backoff") == 0) options.backoff_seconds = atof(value) > 0 ? atof(value) : -1;
        else if (strcmp(arg, "--limit") == 0) limit = atol(value);
        else if (strcmp(arg, "-c") == 0) {
            free(code);
            code = strdup(value);
        } else if (takes) {
            fprintf(stderr, "capsule: unknown option for job: %s\n%s", arg, job_usage);
            free(code);
            return EXIT_USAGE;
        } else if (positional_count < 2) {
            positional[positional_count++] = arg;
            continue;
        } else {
            fprintf(stderr, "capsule: too many arguments\n%s", job_usage);
            free(code);
            return EXIT_USAGE;
        }
        i++; /* the option's value */
    }
    int known = strcmp(verb, "submit") == 0 || strcmp(verb, "get") == 0 ||
                strcmp(verb, "cancel") == 0 || strcmp(verb, "list") == 0 ||
                strcmp(verb, "emit") == 0;
    int needs_one = strcmp(verb, "get") == 0 || strcmp(verb, "cancel") == 0 ||
                    strcmp(verb, "emit") == 0;
    if (!known || (needs_one && positional_count < 1) ||
        (strcmp(verb, "submit") == 0 && !code && positional_count != 1)) {
        fputs(job_usage, stderr);
        free(code);
        return EXIT_USAGE;
    }
    if (strcmp(verb, "submit") == 0 && !code && !(code = read_all(positional[0]))) {
        fprintf(stderr, "capsule: cannot read %s\n", positional[0]);
        return 1;
    }
    char error[CAP_ERROR_SIZE] = "";
    cap_config *config = cap_config_new();
    int rc = !config ? CAP_ENOMEM
             : store  ? cap_config_set_store(config, store, error)
                      : open_default_store(config, error);
    char *out = NULL;
    if (rc == CAP_OK) {
        if (strcmp(verb, "submit") == 0) {
            options.principal = principal;
            rc = cap_job_submit(config, code, &options, &out, error);
        } else if (strcmp(verb, "get") == 0) {
            rc = (out = cap_job_get(config, positional[0], principal, error)) ? CAP_OK : CAP_EINVAL;
        } else if (strcmp(verb, "cancel") == 0) {
            rc = cap_job_cancel(config, positional[0], principal, &out, error);
        } else if (strcmp(verb, "list") == 0) {
            rc = (out = cap_job_list(config, principal, status, limit > 0 ? (size_t)limit : 0,
                                     error))
                     ? CAP_OK
                     : CAP_EINVAL;
        } else {
            int woken = 0;
            rc = cap_job_emit(config, principal ? principal : "", positional[0], positional[1],
                              &woken, error);
            if (rc == CAP_OK && (out = malloc(48))) snprintf(out, 48, "{\"woken\":%d}", woken);
        }
    }
    if (rc == CAP_OK && out) printf("%s\n", out);
    else fprintf(stderr, "capsule: %s\n", error[0] ? error : "out of memory");
    free(out);
    free(code);
    cap_config_free(config);
    return rc == CAP_OK ? 0 : 1;
}
