/*
 * check.c — `capsule check`: the five-test protocol evaluators run first.
 *
 * Each attempt runs inside a fresh sandbox worker and reports whether the
 * guest got what it tried for.  Walls 1-4 pass when every attempt is denied
 * with a Python exception; wall 5 grants exactly one capability of each
 * kind (an environment variable, a file by value, a host function) and
 * passes when those work, a function not granted is refused, and the
 * other four walls still hold; wall 6 mounts a host directory read-only
 * (holding a symbolic link that points out of it) and passes when its file
 * reads and every write or escape fails.  Uses only include/capsule.h.
 */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET_NAME "CAPSULE_CHECK_SECRET"
#define SECRET_VALUE "s3cr3t-from-the-host"

typedef struct attempt {
    int wall;            /* 1..6 */
    const char *what;    /* shown in the table */
    const char *code;    /* Python; the verdict is printed by the wrapper */
    int expect_allowed;  /* only for granted capabilities */
} attempt;

static const char *wall_names[] = {
    "", "host files", "network", "host environment", "processes", "one grant each",
    "read-only mount",
};
#define WALL_COUNT 6

static const attempt attempts[] = {
    {1, "open('/etc/passwd')", "open('/etc/passwd').read()", 0},
    {1, "open('../../../../etc/passwd')", "open('../../../../etc/passwd').read()", 0},
    {1, "relative 'etc/passwd' from /", "import os; os.chdir('/'); open('etc/passwd').read()", 0},
    {1, "stdlib path + '..' to /etc/shadow",
     "open('/usr/local/lib/python3.11/../../../../etc/shadow').read()", 0},
    {1, "open('/proc/self/environ')", "open('/proc/self/environ').read()", 0},
    {1, "list host directories under /",
     "import os\nfound = {'bin', 'etc', 'home', 'proc', 'root', 'var'} & set(os.listdir('/'))\n"
     "if found: result = sorted(found)\nelse: raise PermissionError('no host directories in /')",
     0},
    {2, "socket.socket(AF_INET)", "import socket; socket.socket(socket.AF_INET)", 0},
    {2, "create_connection(127.0.0.1:22)",
     "import socket; socket.create_connection(('127.0.0.1', 22), timeout=2)", 0},
    {2, "urlopen('http://127.0.0.1/')",
     "import urllib.request; urllib.request.urlopen('http://127.0.0.1/', timeout=2)", 0},
    {2, "getaddrinfo('localhost')", "import socket; socket.getaddrinfo('localhost', 80)", 0},
    {3, "os.environ['" SECRET_NAME "']", "import os; result = os.environ['" SECRET_NAME "']", 0},
    {3, "any variable at all",
     "import os\nif os.environ: result = dict(os.environ)\n"
     "else: raise KeyError('the environment is empty')", 0},
    {4, "os.system('id')", "import os; os.system('id')", 0},
    {4, "subprocess.run(['/bin/sh', '-c', 'id'])",
     "import subprocess; subprocess.run(['/bin/sh', '-c', 'id'])", 0},
    {4, "os.fork()", "import os; os.fork()", 0},
    {4, "os.execv('/bin/sh', ...)", "import os; os.execv('/bin/sh', ['sh', '-c', 'id'])", 0},
    {4, "os.posix_spawn('/bin/sh', ...)", "import os; os.posix_spawn('/bin/sh', ['sh'], {})", 0},
    {4, "os.kill(1, 9)", "import os; os.kill(1, 9)", 0},
    {5, "granted variable CAPSULE_GRANTED", "import os; result = os.environ['CAPSULE_GRANTED']", 1},
    {5, "granted file granted.txt", "result = open('granted.txt').read()", 1},
    {5, "host secret still hidden", "import os; result = os.environ['" SECRET_NAME "']", 0},
    {5, "other variables still hidden",
     "import os\nextra = set(os.environ) - {'CAPSULE_GRANTED'}\n"
     "if extra: result = sorted(extra)\nelse: raise KeyError('only the granted variable')", 0},
    {5, "granted function lookup_order(order_id=7)",
     "from capsule.functions import lookup_order\nresult = lookup_order(order_id=7)\n"
     "if result != {'order': 7, 'status': 'shipped'}: raise ValueError(result)", 1},
    {5, "exactly one function is listed",
     "import capsule.functions as f\nresult = f.__all__\n"
     "if result != ['lookup_order']: raise PermissionError(result)", 1},
    {5, "function not granted: delete_order",
     "from capsule.functions import call; call('delete_order', order_id=7)", 0},
    {5, "/etc/passwd still hidden", "open('/etc/passwd').read()", 0},
    {5, "network still denied", "import socket; socket.create_connection(('127.0.0.1', 22))", 0},
    {5, "processes still denied", "import os; os.system('id')", 0},
    {6, "read /data/inside.txt", "result = open('/data/inside.txt').read()", 1},
    {6, "symlink /data/escape -> /etc/passwd", "open('/data/escape').read()", 0},
    {6, "write /data/new.txt", "open('/data/new.txt', 'w').write('x')", 0},
    {6, "append to /data/inside.txt", "open('/data/inside.txt', 'a').write('x')", 0},
    {6, "remove /data/inside.txt", "import os; os.remove('/data/inside.txt')", 0},
    {6, "rename out of /data", "import os; os.rename('/data/inside.txt', '/tmp/taken')", 0},
};

#define ATTEMPT_COUNT (sizeof attempts / sizeof attempts[0])

/* Wall 5's one host function: answers in the host, counting its calls. */
static int lookup_order(void *userdata, const cap_function_call *call, char **result,
                        size_t *result_size, char *error) {
    (void)error;
    ++*(int *)userdata;
    const char *id = strstr(call->arguments, "\"order_id\":");
    char text[96];
    int n = snprintf(text, sizeof text, "{\"order\":%d,\"status\":\"shipped\"}",
                     id ? atoi(id + 11) : -1);
    *result = strdup(text);
    *result_size = (size_t)n;
    return *result ? CAP_FUNCTION_OK : CAP_FUNCTION_ERROR;
}

static const char lookup_schema[] =
    "{\"type\":\"object\",\"properties\":{\"order_id\":{\"type\":\"integer\","
    "\"description\":\"the order's number\"}},\"required\":[\"order_id\"],"
    "\"additionalProperties\":false}";

/* Wraps an attempt so the guest prints one verdict line. */
static char *wrap(const char *code) {
    static const char prefix[] =
        "import sys\nresult = None\ntry:\n    exec(compile(";
    static const char suffix[] =
        ", '<attempt>', 'exec'))\n"
        "    print('ALLOWED', repr(result)[:60])\n"
        "except BaseException as exc:\n"
        "    print('DENIED', type(exc).__name__ + ': ' + str(exc)[:60])\n";
    /* The attempt goes in as a Python string literal: escape it. */
    size_t size = sizeof prefix + sizeof suffix + strlen(code) * 4 + 8;
    char *out = malloc(size);
    if (!out) return NULL;
    char *p = out + sprintf(out, "%s'", prefix);
    for (const char *c = code; *c; c++) {
        if (*c == '\n') p += sprintf(p, "\\n");
        else if (*c == '\'' || *c == '\\') p += sprintf(p, "\\%c", *c);
        else *p++ = *c;
    }
    sprintf(p, "'%s", suffix);
    return out;
}

/* A directory holding inside.txt and a symbolic link to /etc/passwd. */
static int make_mount_directory(char directory[64]) {
    char path[128];
    strcpy(directory, "/tmp/capsule-check-XXXXXX");
    if (!mkdtemp(directory)) {
        directory[0] = '\0';
        return -1;
    }
    snprintf(path, sizeof path, "%s/inside.txt", directory);
    FILE *f = fopen(path, "w");
    if (!f || fputs("inside the mount", f) < 0 || fclose(f) != 0) return -1;
    snprintf(path, sizeof path, "%s/escape", directory);
    return symlink("/etc/passwd", path);
}

static void remove_mount_directory(const char directory[64]) {
    char path[128];
    if (!directory[0]) return;
    snprintf(path, sizeof path, "%s/inside.txt", directory);
    unlink(path);
    snprintf(path, sizeof path, "%s/escape", directory);
    unlink(path);
    rmdir(directory);
}

int capsule_check(cap_config *config, int quiet) {
    char error[CAP_ERROR_SIZE], directory[64] = "";
    /* A secret in our own environment that the guest must never see. */
    setenv(SECRET_NAME, SECRET_VALUE, 1);
    cap_sandbox *sandbox;
    if (cap_sandbox_new(config, &sandbox, error) != CAP_OK) {
        fprintf(stderr, "capsule: %s\n", error);
        return 1;
    }
    static const char granted_text[] = "granted by value";
    cap_file granted = {"granted.txt", granted_text, sizeof granted_text - 1};

    int failures = 0, wall_failures[WALL_COUNT + 1] = {0}, lookups = 0;
    if (!quiet) printf("%-3s %-17s %-42s %-8s %s\n", "#", "wall", "attempt", "verdict", "detail");
    for (size_t i = 0; i < ATTEMPT_COUNT; i++) {
        const attempt *a = &attempts[i];
        cap_run_options options = {0};
        options.capture = 1;
        options.limits.wall_seconds = 20;
        if (a->wall == 5 && (i == 0 || attempts[i - 1].wall != 5)) {
            /* Wall 5 gets its own sandbox, granted one variable and one
             * function (and a file with each run). */
            cap_sandbox_free(sandbox);
            sandbox = NULL;
            if (cap_config_add_env(config, "CAPSULE_GRANTED", "yes", error) != CAP_OK ||
                cap_config_add_function(config, "lookup_order", "Looks an order up.",
                                        lookup_schema, lookup_order, &lookups, error) != CAP_OK ||
                cap_sandbox_new(config, &sandbox, error) != CAP_OK) {
                fprintf(stderr, "capsule: %s\n", error);
                return 1;
            }
        }
        if (a->wall == 6 && attempts[i - 1].wall != 6) {
            /* Wall 6: a host directory of our own, mounted read-only. */
            cap_sandbox_free(sandbox);
            sandbox = NULL;
            if (make_mount_directory(directory) != 0 ||
                cap_config_add_mount(config, directory, "/data", CAP_MOUNT_READ_ONLY, 0, error) !=
                    CAP_OK ||
                cap_sandbox_new(config, &sandbox, error) != CAP_OK) {
                fprintf(stderr, "capsule: wall 6: %s\n", directory[0] ? error : "no temporary directory");
                remove_mount_directory(directory);
                return 1;
            }
        }
        if (a->wall == 5) {
            options.files = &granted;
            options.file_count = 1;
        }
        char *code = wrap(a->code);
        cap_result *result = NULL;
        int rc = code ? cap_sandbox_run(sandbox, code, strlen(code), &options, &result, error)
                      : CAP_ENOMEM;
        free(code);
        size_t out_size = 0;
        const char *out = rc == CAP_OK ? cap_result_stdout(result, &out_size) : "";
        int allowed = strncmp(out, "ALLOWED", 7) == 0;
        int denied = strncmp(out, "DENIED", 6) == 0;
        /* Anything but a clean verdict (a crash, a trap) fails the check:
         * a wall must hold with a Python exception, not by breaking. */
        int pass = a->expect_allowed ? allowed : denied;
        /* The granted function must have run in the host, once. */
        if (a->wall == 5 && strstr(a->what, "granted function") == a->what && lookups != 1)
            pass = 0;
        const char *detail = out_size ? out + (allowed ? 8 : denied ? 7 : 0)
                                      : (rc == CAP_OK ? cap_status_name(cap_result_status(result))
                                                      : error);
        if (!quiet)
            printf("%-3d %-17s %-42s %-8s %.*s\n", a->wall, wall_names[a->wall], a->what,
                   pass ? "ok" : "FAILED", (int)strcspn(detail, "\n"), detail);
        if (!pass) {
            failures++;
            wall_failures[a->wall]++;
        }
        cap_result_free(result);
    }
    cap_sandbox_free(sandbox);
    remove_mount_directory(directory);
    if (!quiet) {
        printf("\n");
        for (int wall = 1; wall <= WALL_COUNT; wall++)
            printf("wall %d, %-17s %s\n", wall, wall_names[wall],
                   wall_failures[wall] ? "FAILED" : "holds");
    }
    printf("%s: %zu attempts, %d failed\n", failures ? "capsule check FAILED" : "capsule check passed",
           ATTEMPT_COUNT, failures);
    return failures ? 1 : 0;
}
