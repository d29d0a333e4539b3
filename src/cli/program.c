/*
 * program.c — host functions backed by host programs (`--function
 * NAME=COMMAND`, or "functions" in --config): each call runs COMMAND, split
 * into words without a shell, with the call's JSON arguments on its stdin;
 * its stdout, which must be JSON, is the result.  The program runs in the
 * host with the host's environment (it is the one holding the secrets);
 * it is killed at the call's timeout or when its output passes the cap.
 * Uses only include/capsule.h.
 */
#include "program.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORDS 64
#define DEFAULT_MAX_OUTPUT (64u << 20)
#define STDERR_KEPT 4096

extern char **environ;

struct program_function {
    char *words[MAX_WORDS + 1]; /* argv, NULL-terminated */
    double timeout_seconds;     /* 0: the call's */
    size_t max_output;
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void free_words(char **words) {
    for (int i = 0; words[i]; i++) free(words[i]);
    words[0] = NULL;
}

/* Splits `command` into words as a shell would without expanding
 * anything: blanks separate, '...' is literal, "..." takes \" and \\,
 * a backslash outside quotes escapes the next character.  0, or -1 for
 * unbalanced quotes, no words or too many. */
static int split_words(const char *command, char **words) {
    int count = 0;
    size_t size = strlen(command) + 1;
    const char *p = command;
    words[0] = NULL;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *word = malloc(size), *w = word;
        if (!word || count == MAX_WORDS) {
            free(word);
            free_words(words);
            return -1;
        }
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (*p == '\'') {
                const char *end = strchr(p + 1, '\'');
                if (!end) break;
                memcpy(w, p + 1, (size_t)(end - p - 1));
                w += end - p - 1;
                p = end + 1;
            } else if (*p == '"') {
                for (p++; *p && *p != '"'; p++) {
                    if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
                    *w++ = *p;
                }
                if (!*p) break;
                p++;
            } else {
                if (*p == '\\' && p[1]) p++;
                *w++ = *p++;
            }
        }
        *w = '\0';
        words[count++] = word;
        words[count] = NULL;
        if (*p && *p != ' ' && *p != '\t' && *p != '\n') { /* an unbalanced quote */
            free_words(words);
            return -1;
        }
    }
    return count ? 0 : -1;
}

/* The call: the program gets the arguments on stdin (a socket, so that a
 * program that exits without reading is an error here, not a SIGPIPE) and
 * gives its result on stdout; stderr's end becomes the error message. */
static int run_program(void *userdata, const cap_function_call *call, char **result,
                       size_t *result_size, char *error) {
    const struct program_function *program = userdata;
    double timeout = call->timeout_seconds;
    if (program->timeout_seconds > 0 && program->timeout_seconds < timeout)
        timeout = program->timeout_seconds;
    size_t max_output = program->max_output;
    if (call->max_result_bytes < max_output) max_output = (size_t)call->max_result_bytes;

    int input[2], output[2], errors[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, input) != 0) {
        snprintf(error, CAP_ERROR_SIZE, "socketpair: %s", strerror(errno));
        return CAP_FUNCTION_ERROR;
    }
    if (pipe2(output, O_CLOEXEC) != 0) {
        close(input[0]), close(input[1]);
        snprintf(error, CAP_ERROR_SIZE, "pipe: %s", strerror(errno));
        return CAP_FUNCTION_ERROR;
    }
    if (pipe2(errors, O_CLOEXEC) != 0) {
        close(input[0]), close(input[1]), close(output[0]), close(output[1]);
        snprintf(error, CAP_ERROR_SIZE, "pipe: %s", strerror(errno));
        return CAP_FUNCTION_ERROR;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, input[1], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, output[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, errors[1], STDERR_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, program->words[0], &actions, NULL, program->words, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(input[1]), close(output[1]), close(errors[1]);
    if (rc != 0) {
        close(input[0]), close(output[0]), close(errors[0]);
        snprintf(error, CAP_ERROR_SIZE, "cannot run %.100s: %s", program->words[0], strerror(rc));
        return CAP_FUNCTION_ERROR;
    }
    fcntl(input[0], F_SETFL, O_NONBLOCK);

    size_t written = 0, length = 0, capacity = 1 << 16, kept = 0;
    char *content = malloc(capacity), stderr_text[STDERR_KEPT];
    double deadline = now_seconds() + timeout;
    const char *problem = content ? NULL : "out of memory";
    int in_open = 1, out_open = 1, err_open = 1, timed_out = 0;
    if (call->arguments_size == 0) {
        shutdown(input[0], SHUT_WR);
        in_open = 0;
    }
    while (!problem && (out_open || err_open)) {
        struct pollfd p[3] = {{output[0], out_open ? POLLIN : 0, 0},
                              {errors[0], err_open ? POLLIN : 0, 0},
                              {input[0], in_open ? POLLOUT : 0, 0}};
        double left = deadline - now_seconds();
        int ready = left > 0 ? poll(p, 3, (int)(left * 1000) + 1) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            timed_out = 1;
            break;
        }
        if (in_open && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = send(input[0], call->arguments + written, call->arguments_size - written,
                             MSG_NOSIGNAL);
            if (n > 0) written += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == call->arguments_size) {
                shutdown(input[0], SHUT_WR); /* end of the arguments (or a reader gone) */
                in_open = 0;
            }
        }
        if (out_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (length == capacity) {
                char *grown = realloc(content, capacity * 2);
                if (!grown) {
                    problem = "out of memory";
                    break;
                }
                content = grown;
                capacity *= 2;
            }
            ssize_t n = read(output[0], content + length, capacity - length);
            if (n > 0) length += (size_t)n;
            else if (n == 0 || errno != EINTR) out_open = 0;
            if (length > max_output) problem = "its result is larger than the cap";
        }
        if (err_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            char chunk[1024];
            ssize_t n = read(errors[0], chunk, sizeof chunk);
            if (n > 0) {
                /* Keep the end: that is where a program says what went wrong. */
                size_t take = (size_t)n < sizeof stderr_text ? (size_t)n : sizeof stderr_text;
                if (kept + take > sizeof stderr_text) {
                    size_t drop = kept + take - sizeof stderr_text;
                    memmove(stderr_text, stderr_text + drop, kept - drop);
                    kept -= drop;
                }
                memcpy(stderr_text + kept, chunk + n - take, take);
                kept += take;
            } else if (n == 0 || errno != EINTR) {
                err_open = 0;
            }
        }
    }
    close(input[0]), close(output[0]), close(errors[0]);
    if (problem || timed_out) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) {
        free(content);
        snprintf(error, CAP_ERROR_SIZE, "%.100s timed out after %g s", program->words[0], timeout);
        return CAP_FUNCTION_TIMEOUT;
    }
    if (!problem && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        /* The last line of its stderr, if it said anything. */
        while (kept && (stderr_text[kept - 1] == '\n' || stderr_text[kept - 1] == '\r')) kept--;
        size_t start = kept;
        while (start && stderr_text[start - 1] != '\n') start--;
        if (kept > start)
            snprintf(error, CAP_ERROR_SIZE, "%.*s", (int)(kept - start), stderr_text + start);
        else if (WIFEXITED(status))
            snprintf(error, CAP_ERROR_SIZE, "%.100s exited with status %d", program->words[0],
                     WEXITSTATUS(status));
        else
            snprintf(error, CAP_ERROR_SIZE, "%.100s was killed by signal %d", program->words[0],
                     WTERMSIG(status));
        free(content);
        return CAP_FUNCTION_ERROR;
    }
    if (!problem && length == 0) {
        memcpy(content, "null", 4);
        length = 4;
    }
    cJSON *parsed = problem ? NULL : cJSON_ParseWithLength(content, length);
    if (!problem && !parsed) problem = "its output is not JSON";
    cJSON_Delete(parsed);
    if (problem) {
        free(content);
        snprintf(error, CAP_ERROR_SIZE, "%.100s failed: %s", program->words[0], problem);
        return CAP_FUNCTION_ERROR;
    }
    *result = content;
    *result_size = length;
    return CAP_FUNCTION_OK;
}

program_function *program_function_add(cap_config *config, const char *name,
                                       const char *command, const cJSON *words,
                                       const char *description, const char *schema_json,
                                       double timeout_seconds, size_t max_output, char *error) {
    program_function *program = calloc(1, sizeof *program);
    if (!program) {
        snprintf(error, CAP_ERROR_SIZE, "out of memory");
        return NULL;
    }
    int count = 0, bad = 0;
    if (command) {
        bad = split_words(command, program->words) != 0;
    } else {
        const cJSON *word;
        cJSON_ArrayForEach(word, words) {
            if (!cJSON_IsString(word) || count == MAX_WORDS) {
                bad = 1;
                break;
            }
            program->words[count++] = strdup(word->valuestring);
        }
        bad |= count == 0;
    }
    if (bad) {
        free_words(program->words);
        free(program);
        snprintf(error, CAP_ERROR_SIZE, "function %.80s: the command must be a program and its "
                                        "arguments (quotes balanced, at most %d words)",
                 name, MAX_WORDS);
        return NULL;
    }
    program->timeout_seconds = timeout_seconds;
    program->max_output = max_output ? max_output : DEFAULT_MAX_OUTPUT;
    if (cap_config_add_function(config, name, description, schema_json, run_program, program,
                                error) != CAP_OK) {
        program_function_free(program);
        return NULL;
    }
    return program;
}

void program_function_free(program_function *program) {
    if (!program) return;
    free_words(program->words);
    free(program);
}
