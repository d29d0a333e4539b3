/*
 * Options that shape the guest's world beyond the defaults: host mounts,
 * HTTP and exec resources, the docs mount, the artifacts directory, and
 * --config FILE, which holds the same settings as JSON (docs/mounts.md).
 * Shared by `capsule run` and `capsule serve`.
 */
#include "world.h"

#include "options.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char world_options_usage[] =
    "  --config FILE        mounts and resources from a JSON file (docs/mounts.md)\n"
    "  --mount HOST:GUEST[:ro|:rw[:QUOTA]]  the host directory HOST at GUEST (repeatable),\n"
    "                       read-only by default; rw may grow it by QUOTA (default 256M)\n"
    "  --docs DIR           markdown files of DIR read-only at /docs, with an index\n"
    "                       /docs/README.md of their titles\n"
    "  --output-dir DIR     write the files the code left in /output to DIR (run only)\n"
    "  --output GUEST       the artifacts directory in the guest (default /output)\n"
    "  --network NAME=URL   reading /network/NAME fetches URL in the host (repeatable);\n"
    "                       NAME may hold one {} that fills URL's {}: 'c-{}.json=https://h/?c={}'\n"
    "  --allow-url PREFIX   URLs (and redirects) that may be fetched, e.g.\n"
    "                       http://127.0.0.1:8000/ (repeatable; nothing by default)\n"
    "  --allow-host HOST    same as --allow-url http://HOST/ and https://HOST/\n"
    "  --http-timeout SECONDS  per fetch (default 10)\n"
    "  --http-max SIZE      largest response body (default 8M)\n"
    "  --exec-resource GUEST_DIR=COMMAND  reading GUEST_DIR/NAME runs the host\n"
    "                       program COMMAND with NAME as its argument (no shell);\n"
    "                       its stdout is the content (10 s, 8M at most)\n"
    "  --wheels DIR         install imported packages from the wheels in DIR (repeatable)\n"
    "  --index-url URL      ... or from a PEP 503/691 simple index (repeatable)\n"
    "  --site-packages DIR  ... or from a host site-packages directory, e.g.\n"
    "                       /usr/lib/python3/dist-packages (pure-Python ones only)\n"
    "  --package-cache DIR  downloaded wheels and built environments (default\n"
    "                       ~/.cache/capsule when a package source is given)\n"
    "  --start-cache DIR    start images: the interpreter's state after start-up, mapped\n"
    "                       instead of initialising it again (default ~/.cache/capsule;\n"
    "                       none: initialise every time)\n"
    "  --function NAME=COMMAND  grant the host function NAME (capsule.functions.NAME in\n"
    "                       the guest): each call runs the host program COMMAND (split\n"
    "                       into words, no shell) with the JSON arguments on stdin; its\n"
    "                       stdout (JSON) is the result (repeatable; docs/functions.md);\n"
    "                       NAME=URL: the host POSTs the arguments to URL (--allow-url)\n"
    "  --allow-function GLOB  grant only the functions matching GLOB (repeatable)\n"
    "  --deny-function GLOB   never grant the functions matching GLOB (repeatable)\n"
    "  --require-approval GLOB  calls of the functions and code-mode tools matching\n"
    "                       GLOB ('github.*') need the MCP client's approval, asked by\n"
    "                       elicitation; refused when it cannot be asked (repeatable)\n"
    "  --audit-log FILE     append one JSON line per function call to FILE\n"
    "  --describe-url URL   describe: an OpenAI-compatible chat/completions URL or an\n"
    "                       Anthropic .../v1/messages URL the host asks about files\n"
    "                       the code made (docs/help-and-describe.md)\n"
    "  --describe-api openai|anthropic  the API the URL speaks (default: anthropic\n"
    "                       when the URL ends in /messages, else openai)\n"
    "  --describe-key-file FILE  its API key (the file's first line)\n"
    "  --describe-key-env NAME   its API key, from the environment variable NAME\n"
    "  --describe-model NAME     its model (default gpt-4o-mini, claude-sonnet-4-5)\n"
    "  --mcp-config FILE    code mode: the tools of the MCP servers in FILE (the\n"
    "                       \"mcpServers\" JSON of Claude Desktop: stdio commands or\n"
    "                       HTTP URLs) become host functions SERVER.TOOL, importable\n"
    "                       as `from servers.SERVER import TOOL` (docs/code-mode.md)\n";

static const char *const world_options[] = {
    "--config", "--mount", "--docs", "--output-dir", "--output", "--network", "--allow-url",
    "--allow-host", "--http-timeout", "--http-max", "--exec-resource", "--wheels", "--index-url",
    "--site-packages", "--package-cache", "--start-cache", "--function", "--allow-function",
    "--deny-function", "--require-approval", "--audit-log", "--mcp-config", "--describe-url",
    "--describe-key-file", "--describe-model", "--describe-api", "--describe-key-env"};

int is_world_option(const char *arg) {
    for (size_t i = 0; i < sizeof world_options / sizeof *world_options; i++)
        if (strcmp(arg, world_options[i]) == 0) return 1;
    return 0;
}

#define EXEC_SECONDS 10
#define EXEC_MAX_BYTES (8u << 20)

extern char **environ;

static double monotonic_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --exec-resource: runs the configured program (userdata) with the file
 * name as its only argument, no shell; its stdout is the file. */
static int exec_read(void *userdata, const char *name, void **data, size_t *size, char *error) {
    const char *command = userdata;
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        snprintf(error, CAP_ERROR_SIZE, "pipe: %s", strerror(errno));
        return 1;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    char *argv[] = {(char *)command, (char *)name, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, command, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fds[1]);
    if (rc != 0) {
        close(pipe_fds[0]);
        snprintf(error, CAP_ERROR_SIZE, "cannot run %s: %s", command, strerror(rc));
        return 1;
    }
    size_t length = 0;
    char *content = malloc(EXEC_MAX_BYTES);
    double deadline = monotonic_seconds() + EXEC_SECONDS;
    const char *problem = content ? NULL : "out of memory";
    while (!problem) {
        double left = deadline - monotonic_seconds();
        struct pollfd p = {pipe_fds[0], POLLIN, 0};
        int ready = left > 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            problem = "timed out";
            break;
        }
        ssize_t n = read(pipe_fds[0], content + length, EXEC_MAX_BYTES - length);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        length += (size_t)n;
        if (length == EXEC_MAX_BYTES) problem = "output too large";
    }
    close(pipe_fds[0]);
    if (problem) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!problem && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) problem = "failed";
    if (problem) {
        free(content);
        snprintf(error, CAP_ERROR_SIZE, "%s %s: %s", command, name, problem);
        return 1;
    }
    *data = content;
    *size = length;
    return 0;
}


static const char *string_member(const cJSON *object, const char *name, int *bad) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    if (item && !cJSON_IsString(item)) *bad = 1;
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* --config FILE: the same settings as the flags, as JSON (docs/mounts.md).
 * Unknown keys are errors, so a typo does not silently grant nothing. */
/* "functions": {"NAME": {"command": "prog args" or ["prog", "args"],
 * "description": TEXT, "input_schema": {...}, "needs_approval": BOOL,
 * "timeout": SECONDS, "max_output_bytes": N}}. */
static int add_config_functions(cap_config *config, const cJSON *functions,
                                world_settings *world, char *error) {
    static const char *const keys[] = {"command", "url", "description", "input_schema",
                                       "needs_approval", "timeout", "max_output_bytes", NULL};
    if (functions && !cJSON_IsObject(functions)) {
        snprintf(error, CAP_ERROR_SIZE, "\"functions\" is an object of NAME: {\"command\": ...}");
        return -1;
    }
    const cJSON *entry;
    cJSON_ArrayForEach(entry, functions) {
        const cJSON *item;
        int bad = !cJSON_IsObject(entry);
        cJSON_ArrayForEach(item, entry) {
            int known = 0;
            for (int i = 0; keys[i]; i++) known |= strcmp(item->string, keys[i]) == 0;
            if (!known) bad = 1;
        }
        const cJSON *command = cJSON_GetObjectItemCaseSensitive(entry, "command");
        const cJSON *description = cJSON_GetObjectItemCaseSensitive(entry, "description");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(entry, "input_schema");
        const cJSON *approval = cJSON_GetObjectItemCaseSensitive(entry, "needs_approval");
        const cJSON *timeout = cJSON_GetObjectItemCaseSensitive(entry, "timeout");
        const cJSON *max = cJSON_GetObjectItemCaseSensitive(entry, "max_output_bytes");
        const cJSON *url = cJSON_GetObjectItemCaseSensitive(entry, "url");
        if (!(cJSON_IsString(command) || cJSON_IsArray(command) || cJSON_IsString(url)) ||
            (command && url) ||
            (description && !cJSON_IsString(description)) || (schema && !cJSON_IsObject(schema)) ||
            (approval && !cJSON_IsBool(approval)) ||
            (timeout && !(cJSON_IsNumber(timeout) && timeout->valuedouble > 0)) ||
            (max && !(cJSON_IsNumber(max) && max->valuedouble >= 1)))
            bad = 1;
        if (bad || world->program_count == MAX_PROGRAM_FUNCTIONS) {
            snprintf(error, CAP_ERROR_SIZE, "function %.80s: malformed (keys: command or url, "
                     "description, input_schema, needs_approval, timeout, max_output_bytes)",
                     entry->string);
            return -1;
        }
        char *schema_text = schema ? cJSON_PrintUnformatted(schema) : NULL;
        if (url) {
            int rc = cap_config_add_http_function(
                config, entry->string, description ? description->valuestring : NULL,
                schema_text, url->valuestring, error);
            free(schema_text);
            if (rc != CAP_OK) return -1;
            if (cJSON_IsTrue(approval) && cap_config_require_approval(config, entry->string, error))
                return -1;
            continue;
        }
        program_function *program = program_function_add(
            config, entry->string, cJSON_IsString(command) ? command->valuestring : NULL, command,
            description ? description->valuestring : NULL, schema_text,
            timeout ? timeout->valuedouble : 0, max ? (size_t)max->valuedouble : 0, error);
        free(schema_text);
        if (!program) return -1;
        world->programs[world->program_count++] = program;
        if (cJSON_IsTrue(approval) && cap_config_require_approval(config, entry->string, error))
            return -1;
    }
    return 0;
}

/* Adds each server of an "mcpServers" object (connected, its tools listed)
 * in order.  0, or -1 with the message in `error`. */
static int add_mcp_servers(cap_config *config, const cJSON *servers, char *error) {
    if (!cJSON_IsObject(servers)) {
        snprintf(error, CAP_ERROR_SIZE, "want {\"mcpServers\": {NAME: {\"command\": ...} or "
                 "{\"url\": ...}}}");
        return -1;
    }
    const cJSON *server;
    cJSON_ArrayForEach(server, servers) {
        char *spec = cJSON_PrintUnformatted(server);
        int rc = spec ? cap_config_add_mcp_server(config, server->string, spec, error) : CAP_ENOMEM;
        free(spec);
        if (rc != CAP_OK) {
            if (rc == CAP_ENOMEM) snprintf(error, CAP_ERROR_SIZE, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* --mcp-config FILE: the "mcpServers" JSON of Claude Desktop and others.
 * 0, or -1 after printing why not. */
static int apply_mcp_config(cap_config *config, const char *path) {
    char error[CAP_ERROR_SIZE];
    size_t size;
    char *text = read_file(path, &size);
    if (!text) {
        fprintf(stderr, "capsule: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    cJSON *json = cJSON_ParseWithLength(text, size);
    free(text);
    int rc = add_mcp_servers(config, cJSON_GetObjectItemCaseSensitive(json, "mcpServers"), error);
    cJSON_Delete(json);
    if (rc != 0) fprintf(stderr, "capsule: %s: %s\n", path, error);
    return rc;
}

static int apply_config_file(cap_config *config, const char *path, world_settings *world) {
    static const char *const keys[] = {"mounts", "docs", "output", "output_dir", "http",
                                       "allow_urls", "http_timeout", "http_max_bytes",
                                       "exec_resources", "wheels", "index_urls", "site_packages",
                                       "package_cache", "functions", "allow_functions",
                                       "deny_functions", "require_approval", "audit_log",
                                       "mcpServers", NULL};
    file_settings *settings = &world->settings;
    char error[CAP_ERROR_SIZE] = "";
    size_t size;
    char *text = read_file(path, &size);
    if (!text) {
        fprintf(stderr, "capsule: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    cJSON *json = cJSON_ParseWithLength(text, size);
    free(text);
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        fprintf(stderr, "capsule: %s: not a JSON object\n", path);
        return 1;
    }
    settings->json = json;
    int bad = 0, rc = CAP_OK;
    const cJSON *item;
    cJSON_ArrayForEach(item, json) {
        int known = 0;
        for (int i = 0; keys[i]; i++) known |= strcmp(item->string, keys[i]) == 0;
        if (!known) {
            snprintf(error, sizeof error, "unknown key \"%.100s\"", item->string);
            bad = 1;
        }
    }
    const cJSON *mount;
    cJSON_ArrayForEach(mount, cJSON_GetObjectItemCaseSensitive(json, "mounts")) {
        const char *host = string_member(mount, "host", &bad);
        const char *guest = string_member(mount, "guest", &bad);
        const char *mode = string_member(mount, "mode", &bad);
        const cJSON *quota = cJSON_GetObjectItemCaseSensitive(mount, "quota_bytes");
        if (!host || !guest || (mode && strcmp(mode, "ro") && strcmp(mode, "rw")) ||
            (quota && !(cJSON_IsNumber(quota) && quota->valuedouble >= 1)))
            bad = 1;
        if (!bad && rc == CAP_OK)
            rc = cap_config_add_mount(config, host, guest,
                                      mode && strcmp(mode, "rw") == 0 ? 0 : CAP_MOUNT_READ_ONLY,
                                      quota ? (uint64_t)quota->valuedouble : 0, error);
    }
    const char *docs = string_member(json, "docs", &bad);
    if (!bad && rc == CAP_OK && docs) rc = cap_config_add_docs(config, docs, error);
    const char *output = string_member(json, "output", &bad);
    if (!bad && rc == CAP_OK && output) rc = cap_config_set_output_directory(config, output, error);
    settings->output_dir = string_member(json, "output_dir", &bad);
    const cJSON *entry;
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(json, "http")) {
        if (!cJSON_IsString(entry)) bad = 1;
        if (!bad && rc == CAP_OK)
            rc = cap_config_add_http_resource(config, entry->string, entry->valuestring, error);
    }
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(json, "allow_urls")) {
        if (!cJSON_IsString(entry)) bad = 1;
        if (!bad && rc == CAP_OK) rc = cap_config_allow_url(config, entry->valuestring, error);
    }
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(json, "exec_resources")) {
        cap_resource_provider provider = {NULL, exec_read, NULL};
        if (!cJSON_IsString(entry)) bad = 1;
        if (!bad && rc == CAP_OK)
            rc = cap_config_add_resource_provider(config, entry->string, &provider,
                                                  entry->valuestring, error);
    }
    /* Package sources, consulted in the order of the issue: wheels, indexes,
     * host site-packages. */
    static const char *const source_keys[] = {"wheels", "index_urls", "site_packages"};
    for (int kind = 0; kind < 3; kind++) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(json, source_keys[kind]);
        if (list && !cJSON_IsArray(list)) bad = 1;
        cJSON_ArrayForEach(entry, list) {
            if (!cJSON_IsString(entry)) bad = 1;
            if (bad || rc != CAP_OK) continue;
            rc = kind == 0   ? cap_config_add_wheel_directory(config, entry->valuestring, error)
                 : kind == 1 ? cap_config_add_index_url(config, entry->valuestring, error)
                             : cap_config_add_site_packages(config, entry->valuestring, error);
            settings->package_sources++;
        }
    }
    settings->package_cache = string_member(json, "package_cache", &bad);
    if (!bad && rc == CAP_OK &&
        add_config_functions(config, cJSON_GetObjectItemCaseSensitive(json, "functions"), world,
                             error) != 0)
        bad = 1;
    const cJSON *servers = cJSON_GetObjectItemCaseSensitive(json, "mcpServers");
    if (!bad && rc == CAP_OK && servers && add_mcp_servers(config, servers, error) != 0) bad = 1;
    static const char *const pattern_lists[] = {"allow_functions", "deny_functions",
                                                "require_approval"};
    for (int which = 0; which < 3; which++) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(json, pattern_lists[which]);
        if (list && !cJSON_IsArray(list)) bad = 1;
        cJSON_ArrayForEach(entry, list) {
            if (!cJSON_IsString(entry)) bad = 1;
            if (bad || rc != CAP_OK) continue;
            rc = which == 0 ? cap_config_allow_functions(config, entry->valuestring, error)
                 : which == 1 ? cap_config_deny_functions(config, entry->valuestring, error)
                              : cap_config_require_approval_matching(config, entry->valuestring,
                                                                     error);
        }
    }
    const char *audit = string_member(json, "audit_log", &bad);
    if (!bad && rc == CAP_OK && audit) rc = cap_config_set_audit_log(config, audit, error);
    const cJSON *timeout = cJSON_GetObjectItemCaseSensitive(json, "http_timeout");
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(json, "http_max_bytes");
    if ((timeout && !(cJSON_IsNumber(timeout) && timeout->valuedouble > 0)) ||
        (max && !(cJSON_IsNumber(max) && max->valuedouble >= 1)))
        bad = 1;
    if (timeout) settings->http_timeout = timeout->valuedouble;
    if (max) settings->http_max = (uint64_t)max->valuedouble;
    if (bad || rc != CAP_OK) {
        fprintf(stderr, "capsule: %s: %s\n", path, error[0] ? error : "malformed setting");
        return 1;
    }
    return 0;
}

int parse_world_option(const char *arg, const char *value, cap_config *config,
                       world_settings *world) {
    char error[CAP_ERROR_SIZE];
    int status = 0;
    if (!is_world_option(arg)) return 0;
    do {
        if (strcmp(arg, "--docs") == 0 || strcmp(arg, "--output") == 0) {
            int rc = arg[2] == 'd' ? cap_config_add_docs(config, value, error)
                                   : cap_config_set_output_directory(config, value, error);
            if (rc != CAP_OK) {
                fprintf(stderr, "capsule: %s\n", error);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--network") == 0) {
            char name[256];
            const char *equals = strchr(value, '=');
            size_t length = equals ? (size_t)(equals - value) : 0;
            if (!equals || length == 0 || length >= sizeof name) {
                fprintf(stderr, "capsule: --network wants NAME=URL\n");
                status = EXIT_USAGE;
                break;
            }
            memcpy(name, value, length);
            name[length] = '\0';
            if (cap_config_add_http_resource(config, name, equals + 1, error) != CAP_OK) {
                fprintf(stderr, "capsule: %s\n", error);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--allow-url") == 0 || strcmp(arg, "--allow-host") == 0) {
            char prefix[4096];
            int rc = CAP_OK;
            for (int scheme = 0; scheme < (arg[8] == 'h' ? 2 : 1) && rc == CAP_OK; scheme++) {
                if (arg[8] == 'h')
                    snprintf(prefix, sizeof prefix, "%s://%s/", scheme ? "https" : "http", value);
                else
                    snprintf(prefix, sizeof prefix, "%s", value);
                rc = strchr(value, '/') && arg[8] == 'h'
                         ? CAP_EINVAL
                         : cap_config_allow_url(config, prefix, error);
            }
            if (rc != CAP_OK) {
                fprintf(stderr, "capsule: %s wants %s\n", arg,
                        arg[8] == 'h' ? "HOST or HOST:PORT" : "a URL prefix such as http://host/");
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--http-timeout") == 0 || strcmp(arg, "--http-max") == 0) {
            if (strcmp(arg, "--http-timeout") == 0) world->http_timeout = parse_seconds(value);
            else world->http_max = parse_size(value);
            if (!world->http_timeout && !world->http_max) {
                fprintf(stderr, "capsule: %s wants a positive number\n", arg);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--config") == 0) {
            if (world->settings.json) {
                fprintf(stderr, "capsule: one --config at a time\n");
                status = EXIT_USAGE;
            } else if (apply_config_file(config, value, world) != 0) {
                status = EXIT_USAGE;
            } else {
                if (!world->output_dir) world->output_dir = world->settings.output_dir;
                if (!world->http_timeout) world->http_timeout = world->settings.http_timeout;
                if (!world->http_max) world->http_max = world->settings.http_max;
            }
        } else if (strcmp(arg, "--mount") == 0) {
            /* HOST:GUEST, HOST:GUEST:ro, HOST:GUEST:rw or HOST:GUEST:rw:QUOTA */
            char host[4096], guest_path[4096];
            const char *colon = strchr(value, ':');
            size_t length = colon ? (size_t)(colon - value) : 0;
            const char *guest = colon ? colon + 1 : "";
            const char *mode = strchr(guest, ':');
            size_t guest_length = mode ? (size_t)(mode - guest) : strlen(guest);
            int read_only = !mode || strcmp(mode, ":ro") == 0;
            uint64_t quota = 0;
            int writable = mode && (strcmp(mode, ":rw") == 0 ||
                                    (strncmp(mode, ":rw:", 4) == 0 && (quota = parse_size(mode + 4))));
            if (!colon || length == 0 || length >= sizeof host || guest_length == 0 ||
                guest_length >= sizeof guest_path || (!read_only && !writable)) {
                fprintf(stderr, "capsule: --mount wants HOST_DIR:GUEST_PATH[:ro|:rw[:QUOTA]]\n");
                status = EXIT_USAGE;
                break;
            }
            memcpy(host, value, length);
            host[length] = '\0';
            memcpy(guest_path, guest, guest_length);
            guest_path[guest_length] = '\0';
            if (cap_config_add_mount(config, host, guest_path, read_only ? CAP_MOUNT_READ_ONLY : 0,
                                     quota, error) != CAP_OK) {
                fprintf(stderr, "capsule: %s\n", error);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--exec-resource") == 0) {
            char directory[4096];
            const char *equals = strchr(value, '=');
            size_t length = equals ? (size_t)(equals - value) : 0;
            cap_resource_provider provider = {NULL, exec_read, NULL};
            if (!equals || length == 0 || length >= sizeof directory || !equals[1]) {
                fprintf(stderr, "capsule: --exec-resource wants GUEST_DIR=COMMAND\n");
                status = EXIT_USAGE;
                break;
            }
            memcpy(directory, value, length);
            directory[length] = '\0';
            if (cap_config_add_resource_provider(config, directory, &provider,
                                                 (void *)(equals + 1), error) != CAP_OK) {
                fprintf(stderr, "capsule: %s\n", error);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--function") == 0) {
            char name[128];
            const char *equals = strchr(value, '=');
            size_t length = equals ? (size_t)(equals - value) : 0;
            if (!equals || length == 0 || length >= sizeof name || !equals[1] ||
                world->program_count == MAX_PROGRAM_FUNCTIONS) {
                fprintf(stderr, "capsule: --function wants NAME=COMMAND (at most %d)\n",
                        MAX_PROGRAM_FUNCTIONS);
                status = EXIT_USAGE;
                break;
            }
            memcpy(name, value, length);
            name[length] = '\0';
            if (strncmp(equals + 1, "http://", 7) == 0 || strncmp(equals + 1, "https://", 8) == 0) {
                /* An endpoint: POSTed to by the host, under the allow-list. */
                if (cap_config_add_http_function(config, name, NULL, NULL, equals + 1, error) !=
                    CAP_OK) {
                    fprintf(stderr, "capsule: %s\n", error);
                    status = EXIT_USAGE;
                }
                break;
            }
            program_function *program =
                program_function_add(config, name, equals + 1, NULL, NULL, NULL, 0, 0, error);
            if (!program) {
                fprintf(stderr, "capsule: %s\n", error);
                status = EXIT_USAGE;
                break;
            }
            world->programs[world->program_count++] = program;
        } else if (strcmp(arg, "--allow-function") == 0 || strcmp(arg, "--deny-function") == 0 ||
                   strcmp(arg, "--audit-log") == 0) {
            int rc = arg[2] == 'a' && arg[3] == 'l'
                         ? cap_config_allow_functions(config, value, error)
                     : arg[2] == 'd' ? cap_config_deny_functions(config, value, error)
                                     : cap_config_set_audit_log(config, value, error);
            if (rc != CAP_OK) {
                fprintf(stderr, "capsule: %s: %s\n", arg, error);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--require-approval") == 0) {
            if (cap_config_require_approval_matching(config, value, error) != CAP_OK) {
                fprintf(stderr, "capsule: %s: %s\n", arg, error);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--describe-url") == 0 || strcmp(arg, "--describe-model") == 0) {
            int url = strcmp(arg, "--describe-url") == 0;
            if (cap_config_set_describe(config, url ? value : NULL, NULL, url ? NULL : value,
                                        error) != CAP_OK) {
                fprintf(stderr, "capsule: %s: %s\n", arg, error);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--describe-key-file") == 0) {
            /* The key's first line; the file is read now, the key never printed. */
            char key[4096] = "";
            FILE *file = fopen(value, "re");
            int read = file && fgets(key, sizeof key, file) != NULL;
            if (file) fclose(file);
            key[strcspn(key, "\r\n")] = '\0';
            int rc = read && key[0] ? cap_config_set_describe(config, NULL, key, NULL, error)
                                    : CAP_EINVAL;
            explicit_bzero(key, sizeof key);
            if (rc != CAP_OK) {
                fprintf(stderr, "capsule: --describe-key-file: cannot read a key from %s\n", value);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--describe-api") == 0) {
            if (cap_config_set_describe_api(config, value, error) != CAP_OK) {
                fprintf(stderr, "capsule: --describe-api: %s\n", error);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--describe-key-env") == 0) {
            /* Read now, once: the variable's name, never its value, is printed. */
            const char *key = getenv(value);
            if (!key || !*key || cap_config_set_describe(config, NULL, key, NULL, error) != CAP_OK) {
                fprintf(stderr, "capsule: --describe-key-env: the environment variable %.100s "
                                "holds no key (set, one line)\n", value);
                status = EXIT_USAGE;
            }
        } else if (strcmp(arg, "--mcp-config") == 0) {
            if (apply_mcp_config(config, value) != 0) status = EXIT_USAGE;
        } else if (strcmp(arg, "--output-dir") == 0) {
            world->output_dir = value;
        } else if (strcmp(arg, "--package-cache") == 0) {
            world->package_cache = value;
        } else if (strcmp(arg, "--start-cache") == 0) {
            world->start_cache = value;
        } else if (strcmp(arg, "--wheels") == 0 || strcmp(arg, "--index-url") == 0 ||
                   strcmp(arg, "--site-packages") == 0) {
            int rc = strcmp(arg, "--wheels") == 0 ? cap_config_add_wheel_directory(config, value, error)
                     : strcmp(arg, "--index-url") == 0 ? cap_config_add_index_url(config, value, error)
                                                       : cap_config_add_site_packages(config, value, error);
            if (rc != CAP_OK) {
                fprintf(stderr, "capsule: %s: %s\n", arg, error);
                status = EXIT_USAGE;
            }
            world->package_sources++;
        }
    } while (0);
    return status ? -1 : 1;
}

int finish_world_options(cap_config *config, world_settings *world) {
    char error[CAP_ERROR_SIZE];
    const char *cache = world->package_cache ? world->package_cache : world->settings.package_cache;
    /* XDG's cache directory; without a home, none (packages in memory, no
     * start images). */
    char default_cache[4096];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/')
        snprintf(default_cache, sizeof default_cache, "%s/capsule", xdg);
    else if (home && home[0] == '/')
        snprintf(default_cache, sizeof default_cache, "%s/.cache/capsule", home);
    else
        default_cache[0] = '\0';
    const char *start = world->start_cache ? world->start_cache : default_cache;
    if (strcmp(start, "none") != 0 && start[0] &&
        cap_config_set_start_cache(config, start, error) != CAP_OK) {
        fprintf(stderr, "capsule: --start-cache: %s\n", error);
        return -1;
    }
    if (!cache && world->package_sources + world->settings.package_sources > 0) {
        if (default_cache[0] && cap_config_set_package_cache(config, default_cache, error) != CAP_OK)
            fprintf(stderr, "capsule: warning: no package cache: %s\n", error);
    } else if (cache && cap_config_set_package_cache(config, cache, error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        return -1;
    }
    if (cap_config_set_http_limits(config, world->http_timeout, (size_t)world->http_max, error) !=
        CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        return -1;
    }
    return 0;
}

void free_world_options(world_settings *world) {
    cJSON_Delete(world->settings.json);
    world->settings.json = NULL;
    for (int i = 0; i < world->program_count; i++) program_function_free(world->programs[i]);
    world->program_count = 0;
}
