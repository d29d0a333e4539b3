/* Command-line options shared by `capsule run` and `capsule serve`. */
#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char shared_options_usage[] =
    "  --env NAME=VALUE     set a variable in the guest environment (repeatable)\n"
    "  --stdlib IMAGE       standard library image (default: stdlib.img beside capsule,\n"
    "                       else ../lib/capsule/stdlib.img from it)\n"
    "  --image IMAGE:GUEST  mount another read-only image at GUEST (repeatable)\n"
    "  --store URL          durable sessions: sqlite:PATH or postgres://... (docs/sessions.md);\n"
    "                       default for serve and run --session:\n"
    "                       sqlite:$XDG_STATE_HOME/capsule/sessions.db\n"
    "  --store-quota SIZE   bound the store's size (oldest parked sessions expire first)\n"
    "  --store-lease SECONDS  how long a dead server keeps its sessions from the others\n"
    "                       sharing a PostgreSQL store (default 30)\n"
    "  --session-ttl SECONDS  a parked session unused this long expires, its state\n"
    "                       dropped (default: never; given to sessions made with it)\n"
    "\n"
    "limits (each run is killed or stopped when it passes one):\n"
    "  --timeout SECONDS    wall-clock time (default 30)\n"
    "  --cpu-time SECONDS   CPU time (default: the wall-clock limit)\n"
    "  --memory SIZE        guest memory, e.g. 256M (default 512M)\n"
    "  --max-output SIZE    stdout + stderr (default 16M)\n"
    "  --disk SIZE          bytes of files in the scratch file system (default 256M)\n"
    "  --max-files N        files and directories in the scratch file system per run, and\n"
    "                       gained by each read-write mount (default 10000)\n"
    "  --max-calls N        host-function calls per run (default 1000)\n"
    "  --max-result SIZE    host-function result bytes per run (default 64M)\n"
    "  --call-timeout SECONDS  per host-function call (default: the wall-clock limit)\n";

static const char *const shared_options[] = {"--env",    "--stdlib", "--image",
                                             "--timeout", "--cpu-time", "--memory",
                                             "--max-output", "--disk", "--max-files",
                                             "--max-calls", "--max-result", "--call-timeout",
                                             "--store", "--store-quota", "--store-lease",
                                             "--session-ttl"};

int store_option_given;
static uint64_t store_quota;
static double store_lease;
static double session_ttl;

int finish_store_options(cap_config *config, char *error) {
    int rc = store_quota ? cap_config_set_store_quota(config, store_quota, error) : CAP_OK;
    if (rc == CAP_OK && store_lease > 0) rc = cap_config_set_store_lease(config, store_lease, error);
    if (rc == CAP_OK && session_ttl > 0) rc = cap_config_set_session_ttl(config, session_ttl, error);
    return rc;
}

int is_shared_option(const char *arg) {
    for (size_t i = 0; i < sizeof shared_options / sizeof *shared_options; i++)
        if (strcmp(arg, shared_options[i]) == 0) return 1;
    return 0;
}

uint64_t parse_size(const char *text) {
    char *end;
    double value = strtod(text, &end);
    if (end == text || !(value > 0)) return 0;
    switch (*end) {
    case 'k': case 'K': value *= 1024.0; end++; break;
    case 'm': case 'M': value *= 1024.0 * 1024; end++; break;
    case 'g': case 'G': value *= 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b') end++;
    return *end || value >= 1e18 ? 0 : (uint64_t)value;
}

double parse_seconds(const char *text) {
    char *end;
    double value = strtod(text, &end);
    return end != text && *end == '\0' && value > 0 && value < 1e9 ? value : 0;
}

/* Splits "LEFT<separator>RIGHT" at the last (or first) separator. */
static int split(const char *value, int separator, int last, char *left, size_t left_size,
                 const char **right) {
    const char *at = last ? strrchr(value, separator) : strchr(value, separator);
    size_t length = at ? (size_t)(at - value) : 0;
    if (!at || length == 0 || length >= left_size) return -1;
    memcpy(left, value, length);
    left[length] = '\0';
    *right = at + 1;
    return 0;
}

int parse_shared_option(const char *arg, const char *value, cap_config *config,
                        cap_limits *limits) {
    char error[CAP_ERROR_SIZE], left[4096];
    const char *right;
    int rc = CAP_OK;
    if (!is_shared_option(arg)) return 0;
    if (strcmp(arg, "--timeout") == 0 || strcmp(arg, "--cpu-time") == 0 ||
        strcmp(arg, "--call-timeout") == 0) {
        double seconds = parse_seconds(value);
        if (!seconds) {
            fprintf(stderr, "capsule: %s wants a positive number of seconds\n", arg);
            return -1;
        }
        *(arg[2] == 't' ? &limits->wall_seconds
          : arg[3] == 'p' ? &limits->cpu_seconds
                          : &limits->function_seconds) = seconds;
    } else if (strcmp(arg, "--max-result") == 0) {
        if (!(limits->function_result_bytes = parse_size(value))) {
            fprintf(stderr, "capsule: --max-result wants a size such as 64M\n");
            return -1;
        }
    } else if (strcmp(arg, "--max-calls") == 0) {
        char *end;
        unsigned long calls = strtoul(value, &end, 10);
        if (end == value || *end || calls == 0 || calls > 1000000000 || value[0] == '-') {
            fprintf(stderr, "capsule: --max-calls wants a positive number\n");
            return -1;
        }
        limits->function_calls = (uint32_t)calls;
    } else if (strcmp(arg, "--memory") == 0 || strcmp(arg, "--max-output") == 0 ||
               strcmp(arg, "--disk") == 0) {
        uint64_t size = parse_size(value);
        if (!size) {
            fprintf(stderr, "capsule: %s wants a size such as 64M\n", arg);
            return -1;
        }
        *(strcmp(arg, "--memory") == 0       ? &limits->memory_bytes
          : strcmp(arg, "--max-output") == 0 ? &limits->output_bytes
                                             : &limits->disk_bytes) = size;
    } else if (strcmp(arg, "--max-files") == 0) {
        char *end;
        unsigned long long entries = strtoull(value, &end, 10);
        if (end == value || *end || entries == 0 || value[0] == '-') {
            fprintf(stderr, "capsule: --max-files wants a positive number\n");
            return -1;
        }
        limits->disk_entries = entries;
        rc = cap_config_set_mount_entry_limit(config, entries, error);
    } else if (strcmp(arg, "--env") == 0) {
        if (split(value, '=', 0, left, 256, &right) != 0) {
            fprintf(stderr, "capsule: --env wants NAME=VALUE\n");
            return -1;
        }
        rc = cap_config_add_env(config, left, right, error);
    } else if (strcmp(arg, "--store") == 0) {
        store_option_given = 1;
        rc = cap_config_set_store(config, value, error);
    } else if (strcmp(arg, "--store-quota") == 0) {
        uint64_t size = parse_size(value);
        if (!size) {
            fprintf(stderr, "capsule: --store-quota wants a size such as 1G\n");
            return -1;
        }
        store_quota = size; /* applied once the store is open (finish_store_options) */
    } else if (strcmp(arg, "--store-lease") == 0) {
        store_lease = parse_seconds(value);
        if (!(store_lease >= 0.1)) {
            fprintf(stderr, "capsule: --store-lease wants seconds (at least 0.1)\n");
            return -1;
        }
    } else if (strcmp(arg, "--session-ttl") == 0) {
        session_ttl = parse_seconds(value);
        if (!(session_ttl > 0)) {
            fprintf(stderr, "capsule: --session-ttl wants a positive number of seconds\n");
            return -1;
        }
    } else if (strcmp(arg, "--stdlib") == 0) {
        rc = cap_config_set_stdlib(config, value, error);
    } else { /* --image */
        if (split(value, ':', 1, left, sizeof left, &right) != 0) {
            fprintf(stderr, "capsule: --image wants IMAGE:GUEST_PATH\n");
            return -1;
        }
        rc = cap_config_add_image(config, left, right, error);
    }
    if (rc != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        return -1;
    }
    return 1;
}

/* Reads a whole stream; NULL on error (errno set). */
char *read_stream(FILE *stream, size_t *size) {
    size_t capacity = 1 << 16, length = 0;
    char *data = malloc(capacity);
    while (data) {
        size_t n = fread(data + length, 1, capacity - length, stream);
        length += n;
        if (n == 0) break;
        if (length == capacity) {
            char *grown = capacity < ((size_t)1 << 40) ? realloc(data, capacity *= 2) : NULL;
            if (!grown) {
                free(data);
                errno = ENOMEM;
                return NULL;
            }
            data = grown;
        }
    }
    if (data && ferror(stream)) {
        free(data);
        return NULL;
    }
    *size = length;
    return data;
}

char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *data = read_stream(f, size);
    int saved = errno;
    fclose(f);
    errno = saved;
    return data;
}


int open_default_store(cap_config *config, char *error) {
    const char *state = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    char directory[4096];
    int n = state && state[0] == '/' ? snprintf(directory, sizeof directory, "%s/capsule", state)
            : home && home[0] == '/'  ? snprintf(directory, sizeof directory,
                                                 "%s/.local/state/capsule", home)
                                      : -1;
    if (n < 0 || (size_t)n >= sizeof directory - 32) {
        snprintf(error, CAP_ERROR_SIZE, "no XDG_STATE_HOME or HOME for the default store: "
                                        "give --store");
        return CAP_EINVAL;
    }
    /* The store makes the directory, private to the user. */
    char url[4200];
    snprintf(url, sizeof url, "sqlite:%s/sessions.db", directory);
    return cap_config_set_store(config, url, error);
}
