/* embed.c: capsule from C, in one screen.  Build against an installed capsule:
 *     cc embed.c $(pkg-config --cflags --libs capsule) -o embed && ./embed */
#include <capsule.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *code = argc > 1 ? argv[1] : "import sys\nprint('hello from', sys.platform)\n6 * 7";
    char error[CAP_ERROR_SIZE];
    cap_config *config = cap_config_new();
    cap_sandbox *sandbox = NULL;
    if (!config || cap_sandbox_new(config, &sandbox, error) != CAP_OK) {
        fprintf(stderr, "embed: %s\n", config ? error : "out of memory");
        cap_config_free(config);
        return 1;
    }
    cap_run_options options = {.capture = 1, .limits = {.wall_seconds = 10}};
    cap_result *result = NULL;
    int status = cap_sandbox_run(sandbox, code, strlen(code), &options, &result, error);
    if (status != CAP_OK) {
        fprintf(stderr, "embed: %s\n", error);
    } else {
        size_t size;
        const char *out = cap_result_stdout(result, &size);
        const char *value = cap_result_return_value(result);
        printf("status: %s\n", cap_status_name(cap_result_status(result)));
        printf("stdout: %.*s", (int)size, out);
        printf("return value: %s\n", value ? value : "(none)");
        status = cap_result_status(result) == CAP_STATUS_SUCCESS ? 0 : 1;
    }
    cap_result_free(result);
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    return status;
}
