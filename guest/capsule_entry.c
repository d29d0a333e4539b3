/*
 * capsule_entry.c — the guest's entries when the host calls it per request.
 *
 * Linked into python.wasm beside CPython's own main (so `_start` still
 * exists), it exports two functions:
 *
 *   capsule_init()  once: runs the constructors, initialises CPython exactly
 *                   as `python ARGS` would from the WASI argv the host gives
 *                   (`-I -u -c COMMAND`), then runs COMMAND, which imports
 *                   and sets up the runner (_capsule_runner.init).
 *   capsule_call()  per request: calls _capsule_runner.serve_one(), which
 *                   reads one request from the control channel, runs it,
 *                   writes the result and returns.
 *
 * Both return 0, or 1 when Python reported an exception (printed to
 * stderr, as `python -c` does); an uncaught SystemExit ends the process
 * through proc_exit, as it would under `python -c`.
 *
 * Why this shape: between two calls no frame of the guest is on the native
 * stack (wasm2c turns wasm frames into C frames), so the whole state of an
 * idle guest is its linear memory, its mutable globals and the host's WASI
 * state.  The module stays a command (crt1-command.o, `_start`) rather than
 * a reactor (crt1-reactor.o, `_initialize`): CPython's Makefile links the
 * command, and because crt1-command.o's _start calls __wasm_call_ctors
 * itself, wasm-ld does not wrap the other exports in ctor/dtor calls (it
 * does for commands that never reference __wasm_call_ctors), so
 * capsule_init runs the constructors once, as _start would, and
 * capsule_call runs no destructors.
 */
#include <Python.h>
#include <stdlib.h>
#include <wasi/api.h>

void __wasm_call_ctors(void);

static PyObject *serve_one; /* _capsule_runner.serve_one, set by capsule_init */

/* The WASI argv as C strings (malloc'd, never freed: capsule_init runs once).
 * 0, or -1 when the host gave none. */
static int read_arguments(int *argc, char ***argv) {
    __wasi_size_t count, size;
    if (__wasi_args_sizes_get(&count, &size) != 0 || count == 0) return -1;
    char **vector = calloc(count + 1, sizeof *vector);
    char *buffer = malloc(size);
    if (!vector || !buffer || __wasi_args_get((uint8_t **)vector, (uint8_t *)buffer) != 0)
        return -1;
    *argc = (int)count;
    *argv = vector;
    return 0;
}

/* Initialises CPython from the WASI argv as Py_BytesMain would, then runs
 * the -c command and looks up the runner's serve_one.  Called once, before
 * any capsule_call; a failure is printed and returned as 1 (the host then
 * reports that the interpreter could not start). */
__attribute__((export_name("capsule_init"))) int capsule_init(void) {
    __wasm_call_ctors();
    int argc;
    char **argv;
    if (read_arguments(&argc, &argv) != 0) return 1;

    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    PyStatus status = PyConfig_SetBytesArgv(&config, argc, argv);
    if (!PyStatus_Exception(status)) status = PyConfig_Read(&config); /* -I, -u, -c */
    if (!PyStatus_Exception(status) && !config.run_command)
        status = PyStatus_Error("capsule_init needs a -c command");
    if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
    if (PyStatus_Exception(status)) {
        PyConfig_Clear(&config);
        if (PyStatus_IsExit(status)) exit(status.exitcode);
        fprintf(stderr, "capsule_init: %s: %s\n", status.func ? status.func : "",
                status.err_msg ? status.err_msg : "");
        return 1;
    }
    /* What Py_RunMain does with -c: audit, then run it in __main__. */
    PyObject *command = PyUnicode_FromWideChar(config.run_command, -1);
    PyConfig_Clear(&config);
    const char *text = command ? PyUnicode_AsUTF8(command) : NULL;
    int failed = !text || PySys_Audit("cpython.run_command", "O", command) < 0;
    if (failed) PyErr_Print();
    PyCompilerFlags flags = _PyCompilerFlags_INIT;
    if (!failed) failed = PyRun_SimpleStringFlags(text, &flags) != 0;
    Py_XDECREF(command);
    if (failed) return 1;

    PyObject *runner = PyImport_ImportModule("_capsule_runner");
    serve_one = runner ? PyObject_GetAttrString(runner, "serve_one") : NULL;
    Py_XDECREF(runner);
    if (!serve_one) {
        PyErr_Print();
        return 1;
    }
    return 0;
}

/* Serves one request (see the file comment).  Everything the request's
 * code raises is part of its result; an exception here is the runner's own
 * failure: printed, and 1. */
__attribute__((export_name("capsule_call"))) int capsule_call(void) {
    if (!serve_one) return 1;
    PyObject *result = PyObject_CallNoArgs(serve_one);
    if (!result) {
        PyErr_Print();
        return 1;
    }
    Py_DECREF(result);
    return 0;
}
