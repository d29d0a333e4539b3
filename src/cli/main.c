/*
 * capsule — command-line front end.  Uses only include/capsule.h.
 *
 *   capsule run [options] FILE | -c CODE | -     run Python in a sandbox
 *   capsule serve --stdio | --http HOST:PORT       the MCP server (serve.c)
 *   capsule warmup                                start a sandbox, time the first call
 *   capsule check                                 the five-test protocol
 *   capsule version
 */
#include "capsule.h"
#include "check.h"
#include "options.h"
#include "serve.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: capsule run [options] FILE | -c CODE | -\n"
    "       capsule serve --stdio | --http HOST:PORT [options]   an MCP server\n"
    "       capsule warmup [options]     start a sandbox and time its first run\n"
    "       capsule check [--quiet]      prove the sandbox's walls hold\n"
    "       capsule version\n"
    "\n"
    "Runs Python 3.11 inside a WebAssembly sandbox: no host files, network,\n"
    "environment or processes unless granted.\n"
    "\n"
    "options for run:\n"
    "  -c CODE              run CODE instead of a file ('-' or no file: stdin)\n"
    "  --json               print one JSON result object instead of streaming output\n"
    "  --file GUEST=HOST    copy a host file into the sandbox's scratch space\n"
    "  --config FILE        mounts and resources from a JSON file (docs/mounts.md)\n"
    "  --mount HOST:GUEST[:ro]  the host directory HOST, read-only at GUEST (repeatable;\n"
    "                       read-write mounts are not supported yet)\n"
    "  --docs DIR           markdown files of DIR read-only at /docs, with an index\n"
    "                       /docs/README.md of their titles\n"
    "  --output-dir DIR     write the files the code left in /output to DIR\n"
    "  --output GUEST       the artifacts directory in the guest (default /output)\n"
    "  --http NAME=URL      reading /network/NAME fetches URL in the host (repeatable)\n"
    "  --allow-url PREFIX   URLs (and redirects) that may be fetched, e.g.\n"
    "                       http://127.0.0.1:8000/ (repeatable; nothing by default)\n"
    "  --allow-host HOST    same as --allow-url http://HOST/ and https://HOST/\n"
    "  --http-timeout SECONDS  per fetch (default 10)\n"
    "  --http-max SIZE      largest response body (default 8M)\n"
    "  --exec-resource GUEST_DIR=COMMAND  reading GUEST_DIR/NAME runs the host\n"
    "                       program COMMAND with NAME as its argument (no shell);\n"
    "                       its stdout is the content (10 s, 8M at most)\n"
    "%s"
    "\n"
    "options for serve (an MCP server; see docs/mcp.md):\n"
    "%s";

static int usage_error(const char *message) {
    if (message) fprintf(stderr, "capsule: %s\n", message);
    fprintf(stderr, usage_text, shared_options_usage, serve_options_usage);
    return EXIT_USAGE;
}

/* Reads a whole stream; NULL on error (errno set). */
static char *read_stream(FILE *stream, size_t *size) {
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

static char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *data = read_stream(f, size);
    int saved = errno;
    fclose(f);
    errno = saved;
    return data;
}

static void write_all(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* the reader went away; the run goes on */
        }
        data += n;
        size -= (size_t)n;
    }
}

static void stream_output(void *userdata, cap_stream stream, const char *data, size_t size) {
    (void)userdata;
    write_all(stream == CAP_STDOUT ? STDOUT_FILENO : STDERR_FILENO, data, size);
}

typedef struct input_file {
    const char *guest, *host;
} input_file;

/* Writes each artifact below `directory`.  Names come from the library
 * already normalised and relative, so they cannot climb out. */
static int write_artifacts(const cap_result *result, const char *directory) {
    if (mkdir(directory, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "capsule: cannot create %s: %s\n", directory, strerror(errno));
        return 1;
    }
    int directory_fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (directory_fd < 0) {
        fprintf(stderr, "capsule: cannot open %s: %s\n", directory, strerror(errno));
        return 1;
    }
    int failed = 0;
    for (size_t i = 0; i < cap_result_artifact_count(result); i++) {
        const cap_artifact *artifact = cap_result_artifact(result, i);
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", artifact->name);
        for (char *slash = strchr(parent, '/'); slash; slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            mkdirat(directory_fd, parent, 0777);
            *slash = '/';
        }
        int fd = openat(directory_fd, artifact->name,
                        O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
        size_t done = 0;
        while (fd >= 0 && done < artifact->size) {
            ssize_t n = write(fd, artifact->data + done, artifact->size - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            done += (size_t)n;
        }
        if (fd < 0 || done < artifact->size) {
            fprintf(stderr, "capsule: cannot write %s/%s: %s\n", directory, artifact->name,
                    strerror(errno));
            failed = 1;
        }
        if (fd >= 0) close(fd);
    }
    close(directory_fd);
    return failed;
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

typedef struct file_settings {
    cJSON *json; /* kept until the end: strings in it are used by the config */
    const char *output_dir;
    double http_timeout;
    uint64_t http_max;
} file_settings;

static const char *string_member(const cJSON *object, const char *name, int *bad) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    if (item && !cJSON_IsString(item)) *bad = 1;
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* --config FILE: the same settings as the flags, as JSON (docs/mounts.md).
 * Unknown keys are errors, so a typo does not silently grant nothing. */
static int apply_config_file(cap_config *config, const char *path, file_settings *settings) {
    static const char *const keys[] = {"mounts", "docs", "output", "output_dir", "http",
                                       "allow_urls", "http_timeout", "http_max_bytes",
                                       "exec_resources", NULL};
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
        if (!host || !guest || (mode && strcmp(mode, "ro") && strcmp(mode, "rw"))) bad = 1;
        if (!bad && rc == CAP_OK)
            rc = cap_config_add_mount(config, host, guest,
                                      mode && strcmp(mode, "rw") == 0 ? 0 : CAP_MOUNT_READ_ONLY, 0,
                                      error);
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
        cap_resource_provider provider = {NULL, exec_read};
        if (!cJSON_IsString(entry)) bad = 1;
        if (!bad && rc == CAP_OK)
            rc = cap_config_add_resource_provider(config, entry->string, &provider,
                                                  entry->valuestring, error);
    }
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

static int command_run(int argc, char **argv) {
    const char *code_arg = NULL, *file_arg = NULL;
    int json = 0;
    const char *output_dir = NULL;
    double http_timeout = 0;
    uint64_t http_max = 0;
    file_settings settings = {0};
    cap_limits limits = {0};
    char error[CAP_ERROR_SIZE];
    input_file inputs[64];
    int input_count = 0;
    cap_config *config = cap_config_new();
    if (!config) {
        fprintf(stderr, "capsule: out of memory\n");
        return 1;
    }
    int status = 0;
    for (int i = 0; i < argc && status == 0; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = strcmp(arg, "-c") == 0 || is_shared_option(arg) ||
                          strcmp(arg, "--file") == 0 || strcmp(arg, "--docs") == 0 ||
                          strcmp(arg, "--output-dir") == 0 || strcmp(arg, "--output") == 0 ||
                          strcmp(arg, "--http") == 0 || strcmp(arg, "--allow-url") == 0 ||
                          strcmp(arg, "--allow-host") == 0 || strcmp(arg, "--http-timeout") == 0 ||
                          strcmp(arg, "--http-max") == 0 || strcmp(arg, "--exec-resource") == 0 ||
                          strcmp(arg, "--mount") == 0 || strcmp(arg, "--config") == 0;
        if (takes_value && !value) {
            fprintf(stderr, "capsule: %s needs a value\n", arg);
            status = EXIT_USAGE;
            break;
        }
        int shared = parse_shared_option(arg, value, config, &limits);
        if (shared < 0) {
            status = EXIT_USAGE;
            break;
        }
        if (shared) {
            i++;
        } else if (strcmp(arg, "-c") == 0) {
            code_arg = value;
            i++;
        } else if (strcmp(arg, "--json") == 0) {
            json = 1;
        } else if (strcmp(arg, "--docs") == 0 || strcmp(arg, "--output") == 0) {
            int rc = arg[2] == 'd' ? cap_config_add_docs(config, value, error)
                                   : cap_config_set_output_directory(config, value, error);
            if (rc != CAP_OK) {
                fprintf(stderr, "capsule: %s\n", error);
                status = EXIT_USAGE;
            }
            i++;
        } else if (strcmp(arg, "--http") == 0) {
            char name[256];
            const char *equals = strchr(value, '=');
            size_t length = equals ? (size_t)(equals - value) : 0;
            if (!equals || length == 0 || length >= sizeof name) {
                fprintf(stderr, "capsule: --http wants NAME=URL\n");
                status = EXIT_USAGE;
                break;
            }
            memcpy(name, value, length);
            name[length] = '\0';
            if (cap_config_add_http_resource(config, name, equals + 1, error) != CAP_OK) {
                fprintf(stderr, "capsule: %s\n", error);
                status = EXIT_USAGE;
            }
            i++;
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
            i++;
        } else if (strcmp(arg, "--http-timeout") == 0 || strcmp(arg, "--http-max") == 0) {
            if (strcmp(arg, "--http-timeout") == 0) http_timeout = parse_seconds(value);
            else http_max = parse_size(value);
            if (!http_timeout && !http_max) {
                fprintf(stderr, "capsule: %s wants a positive number\n", arg);
                status = EXIT_USAGE;
            }
            i++;
        } else if (strcmp(arg, "--config") == 0) {
            if (settings.json) {
                fprintf(stderr, "capsule: one --config at a time\n");
                status = EXIT_USAGE;
            } else if (apply_config_file(config, value, &settings) != 0) {
                status = EXIT_USAGE;
            } else {
                if (!output_dir) output_dir = settings.output_dir;
                if (!http_timeout) http_timeout = settings.http_timeout;
                if (!http_max) http_max = settings.http_max;
            }
            i++;
        } else if (strcmp(arg, "--mount") == 0) {
            char host[4096];
            const char *colon = strchr(value, ':');
            size_t length = colon ? (size_t)(colon - value) : 0;
            const char *guest = colon ? colon + 1 : "";
            const char *mode = strchr(guest, ':');
            char guest_path[4096];
            size_t guest_length = mode ? (size_t)(mode - guest) : strlen(guest);
            int read_only = !mode || strcmp(mode, ":ro") == 0;
            if (!colon || length == 0 || length >= sizeof host || guest_length == 0 ||
                guest_length >= sizeof guest_path || (mode && !read_only && strcmp(mode, ":rw"))) {
                fprintf(stderr, "capsule: --mount wants HOST_DIR:GUEST_PATH[:ro|rw]\n");
                status = EXIT_USAGE;
                break;
            }
            memcpy(host, value, length);
            host[length] = '\0';
            memcpy(guest_path, guest, guest_length);
            guest_path[guest_length] = '\0';
            if (cap_config_add_mount(config, host, guest_path, read_only ? CAP_MOUNT_READ_ONLY : 0,
                                     0, error) != CAP_OK) {
                fprintf(stderr, "capsule: %s\n", error);
                status = EXIT_USAGE;
            }
            i++;
        } else if (strcmp(arg, "--exec-resource") == 0) {
            char directory[4096];
            const char *equals = strchr(value, '=');
            size_t length = equals ? (size_t)(equals - value) : 0;
            cap_resource_provider provider = {NULL, exec_read};
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
            i++;
        } else if (strcmp(arg, "--output-dir") == 0) {
            output_dir = value;
            i++;
        } else if (strcmp(arg, "--file") == 0) {
            const char *equals = strchr(value, '=');
            if (!equals || equals == value || input_count == 64) {
                fprintf(stderr, "capsule: --file wants GUEST_NAME=HOST_PATH (at most 64)\n");
                status = EXIT_USAGE;
                break;
            }
            inputs[input_count++] = (input_file){value, equals + 1};
            i++;
        } else if (strcmp(arg, "-") == 0 || arg[0] != '-') {
            if (file_arg) {
                status = usage_error("one program at a time");
                break;
            }
            file_arg = arg;
        } else {
            fprintf(stderr, "capsule: unknown option %s\n", arg);
            status = usage_error(NULL);
        }
    }
    if (status == 0 && code_arg && file_arg) status = usage_error("give -c CODE or a FILE, not both");
    if (status) {
        cap_config_free(config);
        cJSON_Delete(settings.json);
        return status;
    }

    size_t code_size = 0;
    char *code;
    if (code_arg) {
        code_size = strlen(code_arg);
        code = malloc(code_size + 1);
        if (code) memcpy(code, code_arg, code_size + 1);
    } else if (!file_arg || strcmp(file_arg, "-") == 0) {
        code = read_stream(stdin, &code_size);
    } else {
        code = read_file(file_arg, &code_size);
    }
    if (!code) {
        fprintf(stderr, "capsule: cannot read %s: %s\n", file_arg ? file_arg : "stdin",
                strerror(errno));
        cap_config_free(config);
        cJSON_Delete(settings.json);
        return 1;
    }

    cap_file files[64];
    char guest_names[64][1024];
    for (int i = 0; i < input_count && status == 0; i++) {
        size_t length = (size_t)(strchr(inputs[i].guest, '=') - inputs[i].guest);
        snprintf(guest_names[i], sizeof guest_names[i], "%.*s", (int)length, inputs[i].guest);
        files[i].path = guest_names[i];
        files[i].data = read_file(inputs[i].host, &files[i].size);
        if (!files[i].data) {
            fprintf(stderr, "capsule: cannot read %s: %s\n", inputs[i].host, strerror(errno));
            input_count = i;
            status = 1;
        }
    }

    if (status == 0 && cap_config_set_http_limits(config, http_timeout, (size_t)http_max,
                                                  error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        status = EXIT_USAGE;
    }
    /* One run: no idle workers to keep warm. */
    cap_config_set_pool_size(config, 0, NULL);
    cap_sandbox *sandbox = NULL;
    if (status == 0 && cap_sandbox_new(config, &sandbox, error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        status = 1;
    }

    cap_run_options options = {0};
    options.limits = limits;
    options.files = files;
    options.file_count = (size_t)input_count;
    options.filename = "main.py";
    if (json) {
        options.capture = 1;
    } else {
        options.on_output = stream_output;
        options.traceback_to_stderr = 1;
    }
    cap_result *result = NULL;
    if (status == 0 && cap_sandbox_run(sandbox, code, code_size, &options, &result, error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        status = 1;
    }
    if (result) {
        if (json) {
            char *text = cap_result_to_json(result);
            if (text) {
                printf("%s\n", text);
                free(text);
            } else {
                fprintf(stderr, "capsule: out of memory\n");
            }
        } else if (cap_result_status(result) != CAP_STATUS_SUCCESS &&
                   cap_result_status(result) != CAP_STATUS_RUN_ERROR) {
            fprintf(stderr, "capsule: %s: %s\n", cap_status_name(cap_result_status(result)),
                    cap_result_error(result));
        }
        status = cap_result_exit_code(result);
        if (status < 0 || status > 255) status = 1;
        if (output_dir && write_artifacts(result, output_dir) && status == 0) status = 1;
        cap_result_free(result);
    }
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    cJSON_Delete(settings.json);
    for (int i = 0; i < input_count; i++) free((void *)files[i].data);
    free(code);
    return status;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage_error(NULL);
    if (strcmp(argv[1], "run") == 0) return command_run(argc - 2, argv + 2);
    if (strcmp(argv[1], "serve") == 0) return command_serve(argc - 2, argv + 2);
    if (strcmp(argv[1], "warmup") == 0) return command_warmup(argc - 2, argv + 2);
    if (strcmp(argv[1], "check") == 0) {
        int quiet = argc > 2 && strcmp(argv[2], "--quiet") == 0;
        if (argc > 2 + quiet) return usage_error("check takes only --quiet");
        cap_config *config = cap_config_new();
        if (!config) return 1;
        int status = capsule_check(config, quiet);
        cap_config_free(config);
        return status;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("capsule %s (CPython 3.11, wasm32-wasi via wasm2c)\n", CAP_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf(usage_text, shared_options_usage, serve_options_usage);
        return 0;
    }
    fprintf(stderr, "capsule: unknown command %s\n", argv[1]);
    return usage_error(NULL);
}
