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
#include "job.h"
#include "options.h"
#include "serve.h"
#include "world.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: capsule run [options] FILE | -c CODE | -\n"
    "       capsule serve --stdio | --http HOST:PORT [options]   an MCP server\n"
    "       capsule warmup [options]     start a sandbox and time its first run\n"
    "       capsule job submit|get|cancel|list|emit ...   durable jobs in a store\n"
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
    "  --session NAME       run in durable session NAME: its variables, imports and files\n"
    "                       carry over to the next run with the same NAME (the store)\n"
    "  --idempotency-key K  with --session: a retried run with the same K and code gives\n"
    "                       the stored result instead of running again\n"
    "%s"
    "%s"
    "\n"
    "options for serve (an MCP server; see docs/mcp.md):\n"
    "%s";

static int usage_error(const char *message) {
    if (message) fprintf(stderr, "capsule: %s\n", message);
    fprintf(stderr, usage_text, world_options_usage, shared_options_usage, serve_options_usage);
    return EXIT_USAGE;
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

/* Package installation news: one line on a terminal's stderr, rewritten
 * in place and erased before the program's own output. */
static int progress_shown;

static void clear_progress(void) {
    if (progress_shown) write_all(STDERR_FILENO, "\r\033[K", 4);
    progress_shown = 0;
}

static void show_progress(void *userdata, const char *message) {
    (void)userdata;
    char line[512];
    int n = snprintf(line, sizeof line, "\r\033[Kcapsule: %.400s", message);
    write_all(STDERR_FILENO, line, (size_t)n);
    progress_shown = 1;
}

static void stream_output(void *userdata, cap_stream stream, const char *data, size_t size) {
    (void)userdata;
    clear_progress();
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

static int command_run(int argc, char **argv) {
    const char *code_arg = NULL, *file_arg = NULL, *session_arg = NULL, *key_arg = NULL;
    int json = 0;
    world_settings world = {0};
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
                          is_world_option(arg) || strcmp(arg, "--file") == 0 ||
                          strcmp(arg, "--session") == 0 || strcmp(arg, "--idempotency-key") == 0;
        if (takes_value && !value) {
            fprintf(stderr, "capsule: %s needs a value\n", arg);
            status = EXIT_USAGE;
            break;
        }
        int shared = parse_shared_option(arg, value, config, &limits);
        if (shared == 0) shared = parse_world_option(arg, value, config, &world);
        if (shared < 0) {
            status = EXIT_USAGE;
            break;
        }
        if (shared) {
            i++;
        } else if (strcmp(arg, "-c") == 0) {
            code_arg = value;
            i++;
        } else if (strcmp(arg, "--session") == 0) {
            session_arg = value;
            i++;
        } else if (strcmp(arg, "--idempotency-key") == 0) {
            key_arg = value;
            i++;
        } else if (strcmp(arg, "--json") == 0) {
            json = 1;
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
    if (status == 0 && key_arg && !session_arg) status = usage_error("--idempotency-key needs --session");
    if (status == 0 && session_arg && !store_option_given &&
        open_default_store(config, error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        status = 1;
    }
    if (status == 0 && finish_store_options(config, error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        status = EXIT_USAGE;
    }
    if (status) {
        cap_config_free(config);
        free_world_options(&world);
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
        free_world_options(&world);
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

    if (status == 0 && finish_world_options(config, &world) != 0) status = EXIT_USAGE;
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
    options.session = session_arg;
    options.idempotency_key = key_arg;
    if (json) {
        options.capture = 1;
    } else {
        options.on_output = stream_output;
        options.traceback_to_stderr = 1;
    }
    if (isatty(STDERR_FILENO)) options.on_progress = show_progress;
    cap_result *result = NULL;
    if (status == 0 && cap_sandbox_run(sandbox, code, code_size, &options, &result, error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        status = 1;
    }
    clear_progress();
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
        if (world.output_dir && write_artifacts(result, world.output_dir) && status == 0) status = 1;
        cap_result_free(result);
    }
#ifndef __SANITIZE_ADDRESS__
    /* A one-off run without a store has nothing left to save: leave now,
     * and let the kernel take the memory and the zygote (it exits at the
     * end of its control socket) instead of waiting for its teardown,
     * ≈ 1 ms of a run that takes ≈ 20.  Sanitizer builds free everything,
     * for the leak check. */
    if (!session_arg && !store_option_given) {
        fflush(NULL);
        _exit(status);
    }
#endif
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    free_world_options(&world);
    for (int i = 0; i < input_count; i++) free((void *)files[i].data);
    free(code);
    return status;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage_error(NULL);
    if (strcmp(argv[1], "run") == 0) return command_run(argc - 2, argv + 2);
    if (strcmp(argv[1], "serve") == 0) return command_serve(argc - 2, argv + 2);
    if (strcmp(argv[1], "warmup") == 0) return command_warmup(argc - 2, argv + 2);
    if (strcmp(argv[1], "job") == 0) return command_job(argc - 2, argv + 2);
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
        printf(usage_text, world_options_usage, shared_options_usage, serve_options_usage);
        return 0;
    }
    fprintf(stderr, "capsule: unknown command %s\n", argv[1]);
    return usage_error(NULL);
}
