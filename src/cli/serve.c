/*
 * `capsule serve`: the MCP server on stdio or Streamable HTTP, and
 * `capsule warmup`, which starts a sandbox the way the server does and
 * reports how long that and the first call take.
 */
#include "serve.h"

#include "../mcp/transport.h"
#include "options.h"
#include "world.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ORIGINS 16
#define MAX_TOKENS 256
#define MAX_QUEUE_LIMITS 32

const char serve_options_usage[] =
    "  --stdio              newline-delimited JSON-RPC on stdin/stdout (logs on stderr)\n"
    "  --http [HOST:]PORT   Streamable HTTP at http://HOST:PORT/mcp (HOST default 127.0.0.1;\n"
    "                       PORT 0: any free port)\n"
    "  --workers N          runs in parallel, one sandbox each (default 2)\n"
    "  --queue N            calls that may wait for a worker before 'server busy' (default 16)\n"
    "  --max-body SIZE      largest message accepted (default 16M)\n"
    "  --token-file FILE    HTTP bearer tokens, one a line, each its own principal: a\n"
    "                       client reaches only the sessions its token created\n"
    "                       (or one token in the CAPSULE_TOKEN environment variable)\n"
    "  --no-store           sessions live only in memory (no default store)\n"
    "  --job-runners N      threads running durable jobs from the store (default 1; 0: none)\n"
    "  --job-poll SECONDS   how often an idle runner looks for due jobs (default 0.5; it is\n"
    "                       woken at once by submits here and, on PostgreSQL, anywhere)\n"
    "  --job-retention SECONDS\n"
    "                       finished jobs (and events no job can await) are deleted this\n"
    "                       long after they finished (default 604800: 7 days)\n"
    "  --job-queue-limit QUEUE=N\n"
    "                       at most N jobs of QUEUE run at once on all nodes sharing the\n"
    "                       store (0: no limit; kept in the store; repeatable)\n"
    "  --no-auth            HTTP without a token: only on a loopback address; then each\n"
    "                       MCP session (Mcp-Session-Id) is its own principal\n"
    "  --max-connections N  HTTP connections open at once (default 4096)\n"
    "  --max-connections-per-address N\n"
    "                       from one client address (default 64); headers must arrive\n"
    "                       within 5 s of connecting\n"
    "  --allow-origin URL   an Origin allowed besides loopback ones (repeatable)\n"
    "  (and --env, --stdlib, --image, the limits, and the mount and resource options\n"
    "  of run above but --output-dir)\n";

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *listening_host = "127.0.0.1"; /* for announce(), a callback */

static void announce(int port) {
    fprintf(stderr, "capsule: MCP server listening on http://%s:%d/mcp\n", listening_host, port);
}

/* The tokens of a token file: one a line (at most 1022 characters),
 * surrounding whitespace removed; empty lines and lines that start with '#'
 * are skipped.  Appends to
 * `tokens` (at most MAX_TOKENS in all); the number read, or -1 when the
 * file cannot be read or has too many tokens. */
static int read_tokens(const char *path, char **tokens, size_t *count) {
    FILE *f = fopen(path, "r");
    char line[1024];
    int read = 0;
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (!strchr(line, '\n') && !feof(f)) { /* a token longer than the buffer, */
            read = -1;                          /* never to be cut in two tokens */
            break;
        }
        char *start = line;
        while (*start == ' ' || *start == '\t') start++;
        size_t length = strcspn(start, "\r\n");
        while (length && (start[length - 1] == ' ' || start[length - 1] == '\t')) length--;
        start[length] = '\0';
        if (!length || *start == '#') continue;
        if (*count == MAX_TOKENS || !(tokens[*count] = strdup(start))) {
            read = -1;
            break;
        }
        (*count)++;
        read++;
    }
    fclose(f);
    return read;
}

int command_serve(int argc, char **argv) {
    mcp_server_options server_options = {0};
    server_options.workers = 2;
    server_options.queue = 16;
    mcp_transport_options transport = {0};
    const char *origins[MAX_ORIGINS];
    const char *http = NULL, *token_file = NULL;
    int stdio = 0, no_store = 0, job_runners = 1;
    double job_poll = 0;
    const char *queue_limits[MAX_QUEUE_LIMITS];
    int queue_limit_count = 0;
    char host[64] = "127.0.0.1";
    transport.max_message_bytes = 16u << 20;
    transport.origins = origins;
    world_settings world = {0};
    cap_config *config = cap_config_new();
    if (!config) return 1;
    int status = 0;
    for (int i = 0; i < argc && status == 0; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = is_shared_option(arg) || is_world_option(arg) || strcmp(arg, "--http") == 0 ||
                          strcmp(arg, "--workers") == 0 || strcmp(arg, "--queue") == 0 ||
                          strcmp(arg, "--max-body") == 0 || strcmp(arg, "--token-file") == 0 ||
                          strcmp(arg, "--allow-origin") == 0 || strcmp(arg, "--job-runners") == 0 ||
                          strcmp(arg, "--job-poll") == 0 || strcmp(arg, "--job-queue-limit") == 0 ||
                          strcmp(arg, "--job-retention") == 0 ||
                          strcmp(arg, "--max-connections") == 0 ||
                          strcmp(arg, "--max-connections-per-address") == 0;
        if (takes_value && !value) {
            fprintf(stderr, "capsule: %s needs a value\n", arg);
            status = EXIT_USAGE;
            break;
        }
        int shared = parse_shared_option(arg, value, config, &server_options.limits);
        if (shared == 0) shared = parse_world_option(arg, value, config, &world);
        if (shared < 0) status = EXIT_USAGE;
        else if (shared) i++;
        else if (strcmp(arg, "--stdio") == 0) stdio = 1;
        else if (strcmp(arg, "--no-auth") == 0) transport.allow_no_auth = 1;
        else if (strcmp(arg, "--no-store") == 0) no_store = 1;
        else if (strcmp(arg, "--http") == 0) http = argv[++i];
        else if (strcmp(arg, "--token-file") == 0) token_file = argv[++i];
        else if (strcmp(arg, "--job-runners") == 0) {
            char *end;
            job_runners = (int)strtol(value, &end, 10);
            if (*end || job_runners < 0 || job_runners > 16) {
                fprintf(stderr, "capsule: --job-runners wants a number from 0 to 16\n");
                status = EXIT_USAGE;
            }
            i++;
        } else if (strcmp(arg, "--job-queue-limit") == 0) {
            if (queue_limit_count == MAX_QUEUE_LIMITS) {
                fprintf(stderr, "capsule: at most %d --job-queue-limit\n", MAX_QUEUE_LIMITS);
                status = EXIT_USAGE;
            } else {
                queue_limits[queue_limit_count++] = value;
            }
            i++;
        } else if (strcmp(arg, "--job-retention") == 0) {
            char *end;
            double seconds = strtod(value, &end);
            char error[CAP_ERROR_SIZE];
            if (*end || cap_config_set_job_retention(config, seconds, error) != CAP_OK) {
                fprintf(stderr, "capsule: --job-retention wants seconds, more than 0 and "
                                "at most 10 years\n");
                status = EXIT_USAGE;
            }
            i++;
        } else if (strcmp(arg, "--job-poll") == 0) {
            char *end;
            job_poll = strtod(value, &end);
            if (*end || !(job_poll >= 0.01 && job_poll <= 3600)) {
                fprintf(stderr, "capsule: --job-poll wants seconds from 0.01 to 3600\n");
                status = EXIT_USAGE;
            }
            i++;
        }
        else if (strcmp(arg, "--workers") == 0 || strcmp(arg, "--queue") == 0) {
            char *end;
            long n = strtol(value, &end, 10);
            if (*end || n < (arg[2] == 'w' ? 1 : 0) || n > 256) {
                fprintf(stderr, "capsule: %s wants a number up to 256\n", arg);
                status = EXIT_USAGE;
            }
            *(arg[2] == 'w' ? &server_options.workers : &server_options.queue) = (int)n;
            i++;
        } else if (strcmp(arg, "--max-connections") == 0 ||
                   strcmp(arg, "--max-connections-per-address") == 0) {
            char *end;
            long n = strtol(value, &end, 10);
            if (*end || n < 1 || n > 1000000) {
                fprintf(stderr, "capsule: %s wants a number from 1 to 1000000\n", arg);
                status = EXIT_USAGE;
            }
            *(strcmp(arg, "--max-connections") == 0 ? &transport.max_connections
                                                    : &transport.max_connections_per_address) =
                (int)n;
            i++;
        } else if (strcmp(arg, "--max-body") == 0) {
            transport.max_message_bytes = parse_size(value);
            if (!transport.max_message_bytes) {
                fprintf(stderr, "capsule: --max-body wants a size such as 16M\n");
                status = EXIT_USAGE;
            }
            i++;
        } else if (strcmp(arg, "--allow-origin") == 0) {
            if (transport.origin_count == MAX_ORIGINS) {
                fprintf(stderr, "capsule: at most %d --allow-origin\n", MAX_ORIGINS);
                status = EXIT_USAGE;
            } else {
                origins[transport.origin_count++] = value;
            }
            i++;
        } else {
            fprintf(stderr, "capsule: unknown option for serve: %s\n", arg);
            status = EXIT_USAGE;
        }
    }
    if (status == 0 && world.output_dir) {
        fprintf(stderr, "capsule: serve returns artifacts to the client: --output-dir is for run\n");
        status = EXIT_USAGE;
    }
    if (status == 0 && finish_world_options(config, &world) != 0) status = EXIT_USAGE;
    server_options.installs_packages = world.package_sources + world.settings.package_sources > 0;
    if (status == 0 && stdio == !!http) {
        fprintf(stderr, "capsule: serve wants exactly one of --stdio and --http HOST:PORT\n");
        status = EXIT_USAGE;
    }
    if (status == 0 && http) {
        /* HOST:PORT, or :PORT and PORT for 127.0.0.1: loopback unless asked. */
        const char *colon = strrchr(http, ':');
        const char *port_text = colon ? colon + 1 : http;
        size_t host_length = colon ? (size_t)(colon - http) : 0;
        char *end;
        long port = *port_text ? strtol(port_text, &end, 10) : -1;
        if (port < 0 || port > 65535 || *end || host_length >= sizeof host) {
            fprintf(stderr, "capsule: --http wants [HOST:]PORT, e.g. 127.0.0.1:8000\n");
            status = EXIT_USAGE;
        } else {
            if (host_length) snprintf(host, sizeof host, "%.*s", (int)host_length, http);
            transport.host = listening_host = host;
            transport.port = (int)port;
        }
    }
    char *tokens[MAX_TOKENS];
    size_t token_count = 0;
    if (status == 0 && http) {
        if (token_file && read_tokens(token_file, tokens, &token_count) <= 0) {
            fprintf(stderr, "capsule: cannot read tokens from %s (one a line, at most %d)\n",
                    token_file, MAX_TOKENS);
            status = 1;
        } else if (!token_count && getenv("CAPSULE_TOKEN") && *getenv("CAPSULE_TOKEN")) {
            if ((tokens[0] = strdup(getenv("CAPSULE_TOKEN")))) token_count = 1;
        }
        transport.tokens = (const char *const *)tokens;
        transport.token_count = token_count;
    }
    char error[CAP_ERROR_SIZE];
    if (status == 0 && no_store && store_option_given) {
        fprintf(stderr, "capsule: give --store or --no-store, not both\n");
        status = EXIT_USAGE;
    }
    /* Durable sessions by default.  The default store belongs to one server
     * at a time: a second server on the machine runs without one (and says
     * so) rather than not at all; an explicit --store must open. */
    int durable = store_option_given;
    if (status == 0 && !no_store && !store_option_given) {
        if (open_default_store(config, error) == CAP_OK)
            durable = 1;
        else
            fprintf(stderr, "capsule: sessions are not durable (%s); give --store URL, or "
                            "--no-store to silence this\n", error);
    }
    if (status == 0 && finish_store_options(config, error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        status = EXIT_USAGE;
    }
    server_options.durable = durable;
    mcp_server *server = NULL;
    if (status == 0) {
        double started = now_seconds();
        if (mcp_server_new(config, &server_options, &server, error) != CAP_OK) {
            fprintf(stderr, "capsule: %s\n", error);
            status = 1;
        } else {
            fprintf(stderr, "capsule: %d sandboxes warm in %.0f ms\n", server_options.workers,
                    (now_seconds() - started) * 1000);
        }
    }
    /* Per-queue limits live in the store, for every node: QUEUE=N. */
    for (int i = 0; status == 0 && i < queue_limit_count; i++) {
        const char *equals = strrchr(queue_limits[i], '=');
        char queue[129], *end = NULL;
        long limit = equals ? strtol(equals + 1, &end, 10) : -1;
        size_t length = equals ? (size_t)(equals - queue_limits[i]) : 0;
        if (!equals || !length || length >= sizeof queue || *end || equals[1] == '\0' ||
            limit < 0 || limit > 100000) {
            fprintf(stderr, "capsule: --job-queue-limit wants QUEUE=N, e.g. reports=2\n");
            status = EXIT_USAGE;
            break;
        }
        if (!durable) {
            fprintf(stderr, "capsule: --job-queue-limit needs a store\n");
            status = EXIT_USAGE;
            break;
        }
        memcpy(queue, queue_limits[i], length);
        queue[length] = '\0';
        if (cap_job_set_queue_limit(config, queue, (int)limit, error) != CAP_OK) {
            fprintf(stderr, "capsule: %s\n", error);
            status = 1;
        }
    }
    /* Durable jobs: runners of their own, beside the MCP server's sandboxes. */
    if (status == 0 && durable && job_runners > 0 &&
        cap_jobs_start(config, job_runners, &server_options.limits, job_poll, error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        status = 1;
    }
    if (status == 0) {
        transport.on_listening = announce;
        int rc = stdio ? mcp_serve_stdio(server, &transport, error)
                       : mcp_serve_http(server, &transport, error);
        if (rc != CAP_OK) {
            fprintf(stderr, "capsule: %s\n", error);
            status = 1;
        }
    }
    mcp_server_free(server);
    cap_config_free(config);
    free_world_options(&world);
    for (size_t i = 0; i < token_count; i++) free(tokens[i]);
    return status;
}

int command_warmup(int argc, char **argv) {
    cap_limits limits = {0};
    cap_config *config = cap_config_new();
    if (!config) return 1;
    for (int i = 0; i < argc; i++) {
        int shared = i + 1 < argc ? parse_shared_option(argv[i], argv[i + 1], config, &limits) : 0;
        if (shared <= 0) {
            if (shared == 0) fprintf(stderr, "capsule: unknown option for warmup: %s\n", argv[i]);
            cap_config_free(config);
            return EXIT_USAGE;
        }
        i++;
    }
    char error[CAP_ERROR_SIZE];
    cap_sandbox *sandbox = NULL;
    double started = now_seconds();
    if (cap_sandbox_new(config, &sandbox, error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        cap_config_free(config);
        return 1;
    }
    double warm = now_seconds();
    cap_run_options options = {0};
    options.capture = 1;
    options.limits = limits;
    cap_result *result = NULL;
    int rc = cap_sandbox_run(sandbox, "print(1)", 8, &options, &result, error);
    double first = now_seconds();
    int ok = rc == CAP_OK && cap_result_status(result) == CAP_STATUS_SUCCESS;
    if (ok)
        printf("sandbox ready in %.1f ms (interpreter initialised, imports warm); "
               "first run took %.2f ms\n",
               (warm - started) * 1000, (first - warm) * 1000);
    else
        fprintf(stderr, "capsule: the first run failed: %s\n",
                rc != CAP_OK ? error : cap_result_error(result));
    cap_result_free(result);
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    return ok ? 0 : 1;
}
