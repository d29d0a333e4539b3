/*
 * The tools: their definitions (tools/list) and tools/call, which checks a
 * call's arguments and hands it to the tool's part (run_tool.c, job_tools.c,
 * describe_tool.c, tasks.c) or runs a session tool's fixed program here.
 */
#include "server_internal.h"

#include "../sandbox/buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* The session tools run these fixed programs in the session's interpreter;
 * arguments arrive as the global __capsule_arguments__, never as code. */
static const char list_files_code[] =
    "(lambda a: [{'name': e.name, 'type': 'directory' if e.is_dir() else 'file',\n"
    "             'size': e.stat().st_size if e.is_file() else None}\n"
    "            for e in sorted(__import__('os').scandir(a['path']), key=lambda e: e.name)])"
    "(__capsule_arguments__)";
static const char write_file_code[] =
    "(lambda a: (__import__('os').makedirs(__import__('os').path.dirname(a['path']) or '.',"
    " exist_ok=True), open(a['path'], 'wb').write(a['data'].encode('utf-8') if a['encoding'] =="
    " 'utf-8' else __import__('base64').b64decode(a['data'])))[1])(__capsule_arguments__)";

/* read_file: {'text': ...} when the file is UTF-8 (it survives a decode
 * and encode unchanged), else {'base64': ...}. */
static const char read_file_expression[] =
    "(lambda data: (lambda text: {'text': text} if text.encode('utf-8') == data else\n"
    "   {'base64': __import__('base64').b64encode(data).decode()})(data.decode('utf-8', "
    "'replace')))(open(__capsule_arguments__['path'], 'rb').read())";

cJSON *mcp_tool_definitions(const mcp_server *server) {
    static const char definitions[] =
        "["
        "{\"name\":\"run_python_code\","
        "\"description\":\"Run Python 3.11 code in a WebAssembly sandbox (no network, no host "
        "files). Output (stdout and stderr) and the value of the last expression are returned. "
        "Top-level await works. Files under /output are returned as artifacts. Pass session_id "
        "to keep variables and files between calls.\","
        "\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"python_code\":{\"type\":\"string\",\"description\":\"Python code to run\"},"
        "\"global_variables\":{\"type\":\"object\",\"additionalProperties\":true,\"default\":{},"
        "\"description\":\"Map of global variables in context when the code runs\"},"
        "\"session_id\":{\"type\":\"string\",\"description\":\"Run in this session: state is "
        "kept between calls with the same id\"},"
        "\"idempotency_key\":{\"type\":\"string\",\"description\":\"With session_id on a "
        "durable server: a retry with the same key and code returns the stored result instead "
        "of running again\"},"
        "\"timeout_seconds\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"description\":"
        "\"Wall-clock limit of this run (at most the server's)\"},"
        "\"files\":{\"type\":\"array\",\"description\":\"Input files placed in the working "
        "directory /work before the code runs\",\"items\":{\"type\":\"object\",\"properties\":{"
        "\"path\":{\"type\":\"string\"},\"content\":{\"type\":\"string\"},\"encoding\":{\"enum\":"
        "[\"utf-8\",\"base64\"],\"default\":\"utf-8\"}},\"required\":[\"path\",\"content\"]}}},"
        "\"required\":[\"python_code\"]},"
        "\"outputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"status\":{\"enum\":[\"success\",\"install-error\",\"run-error\"]},"
        "\"capsule_status\":{\"type\":\"string\"},"
        "\"dependencies\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
        "\"notes\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
        "\"output\":{\"type\":\"string\"},"
        "\"return_value\":{\"type\":[\"string\",\"null\"]},"
        "\"error\":{\"type\":[\"string\",\"null\"]},"
        "\"artifacts\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
        "\"name\":{\"type\":\"string\"},\"media_type\":{\"type\":\"string\"},\"size\":{\"type\":"
        "\"integer\"}}}}},"
        "\"required\":[\"status\",\"capsule_status\",\"dependencies\",\"output\",\"return_value\","
        "\"error\",\"artifacts\"]}},"
        "{\"name\":\"create_session\",\"description\":\"Start a Python session; pass its "
        "session_id to run_python_code to keep state between calls.\",\"inputSchema\":{\"type\":"
        "\"object\",\"properties\":{}},\"outputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"session_id\":{\"type\":\"string\"}},\"required\":[\"session_id\"]}},"
        "{\"name\":\"close_session\",\"description\":\"End a Python session and free its "
        "memory and files.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"session_id\":"
        "{\"type\":\"string\"}},\"required\":[\"session_id\"]}},"
        "{\"name\":\"list_files\",\"description\":\"List a directory of a session's file system "
        "(default: the working directory /work).\",\"inputSchema\":{\"type\":\"object\","
        "\"properties\":{\"session_id\":{\"type\":\"string\"},\"path\":{\"type\":\"string\","
        "\"default\":\"/work\"}},\"required\":[\"session_id\"]}},"
        "{\"name\":\"read_file\",\"description\":\"Read a file of a session's file system: text "
        "if it is UTF-8, else base64.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"session_id\":{\"type\":\"string\"},\"path\":{\"type\":\"string\"}},\"required\":["
        "\"session_id\",\"path\"]}},"
        "{\"name\":\"write_file\",\"description\":\"Write a file into a session's file system "
        "(directories are created).\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"session_id\":{\"type\":\"string\"},\"path\":{\"type\":\"string\"},\"content\":{"
        "\"type\":\"string\"},\"encoding\":{\"enum\":[\"utf-8\",\"base64\"],\"default\":"
        "\"utf-8\"}},\"required\":[\"session_id\",\"path\",\"content\"]}}"
        "]";
    static const char durable_definitions[] =
        "[{\"name\":\"fork_session\",\"description\":\"Start a new session from another "
        "session's state after its last finished call (variables, imports, files); the other "
        "goes on unchanged.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"session_id\":{\"type\":\"string\"}},\"required\":[\"session_id\"]},"
        "\"outputSchema\":{\"type\":\"object\",\"properties\":{\"session_id\":{\"type\":"
        "\"string\"}},\"required\":[\"session_id\"]}},"
        "{\"name\":\"session_history\",\"description\":\"A session's state (live, parked, "
        "expired) and its calls with status and timing; a call cut off by a server restart "
        "says interrupted.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"session_id\":{\"type\":\"string\"}},\"required\":[\"session_id\"]}}]";
    static const char job_definitions[] =
        "[{\"name\":\"submit_job\",\"description\":\"Run Python code as a durable background "
        "job: it survives server restarts and is retried on failure. Inside it, "
        "capsule.step(name, fn, *args) caches fn's JSON-able result (a retry returns it without "
        "running fn again), capsule.sleep(seconds) parks the job, capsule.await_event(name, "
        "timeout=None) waits for emit_event. Returns the job (job_id, status); read it with "
        "get_job.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"code\":{\"type\":\"string\",\"description\":\"Python code; the value of its last "
        "expression is the job's result\"},"
        "\"queue\":{\"type\":\"string\",\"default\":\"default\"},"
        "\"idempotency_key\":{\"type\":\"string\",\"description\":\"A key used before "
        "returns that job instead of a new one\"},"
        "\"max_attempts\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000,"
        "\"default\":3},"
        "\"timeout_seconds\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"default\":60,"
        "\"description\":\"Wall-clock limit of one attempt\"},"
        "\"backoff\":{\"type\":\"number\",\"minimum\":0,\"default\":1,\"description\":"
        "\"Seconds before the first retry, doubled for each later one\"}},"
        "\"required\":[\"code\"]}},"
        "{\"name\":\"get_job\",\"description\":\"A job's status (queued, running, sleeping, "
        "waiting, failed: a retry is due, succeeded, dead: out of attempts, cancelled), "
        "attempts, node, last error and, once succeeded, its result.\",\"inputSchema\":{"
        "\"type\":\"object\",\"properties\":{\"job_id\":{\"type\":\"string\"}},"
        "\"required\":[\"job_id\"]}},"
        "{\"name\":\"cancel_job\",\"description\":\"Cancel a job: at once unless it is "
        "running, else at its next step, sleep or wait.\",\"inputSchema\":{\"type\":"
        "\"object\",\"properties\":{\"job_id\":{\"type\":\"string\"}},\"required\":["
        "\"job_id\"]}},"
        "{\"name\":\"list_jobs\",\"description\":\"Your jobs, newest first: state, attempts, "
        "node, last error.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"status\":{\"type\":\"string\"},\"limit\":{\"type\":\"integer\",\"minimum\":1,"
        "\"maximum\":1000,\"default\":100}}}},"
        "{\"name\":\"emit_event\",\"description\":\"Emit an event: your jobs waiting in "
        "capsule.await_event(name) get its payload and go on.\",\"inputSchema\":{\"type\":"
        "\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"payload\":{"
        "\"description\":\"Any JSON value (default null)\"}},\"required\":[\"name\"]}}]";
    cJSON *tools = cJSON_Parse(definitions);
    if (server->durable) {
        cJSON *more = cJSON_Parse(durable_definitions), *tool;
        while (more && (tool = cJSON_DetachItemFromArray(more, 0))) cJSON_AddItemToArray(tools, tool);
        cJSON_Delete(more);
        more = cJSON_Parse(job_definitions);
        while (more && (tool = cJSON_DetachItemFromArray(more, 0))) cJSON_AddItemToArray(tools, tool);
        cJSON_Delete(more);
    }
    /* help: always something to search (the recipes ship in the binary). */
    static const char help_definition[] =
        "{\"name\":\"help\",\"description\":\"Search the documentation before writing code: "
        "the files under /docs (by section), recipes for what agents do most here (CSV, Excel "
        "XLSX and charts, PDF, zip, JSON, sqlite3, images, which packages can be installed) and "
        "the host functions and tools granted to the code. Ask in plain words. Returns the best "
        "sections, best first, with title, path (open /docs files from the code), snippet and "
        "the section's text.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"query\":{\"type\":\"string\",\"description\":\"A question or keywords, e.g. "
        "'how do I add a chart to an xlsx file'\"},\"limit\":{\"type\":\"integer\","
        "\"minimum\":1,\"maximum\":20,\"default\":5}},\"required\":[\"query\"]}}";
    cJSON_AddItemToArray(tools, cJSON_Parse(help_definition));
    /* Listed always: without an endpoint the client's model answers (if it
     * offers sampling), else the file comes back for the caller to see. */
    static const char describe_definition[] =
        "{\"name\":\"describe\",\"description\":\"Ask a model about a file in a session's "
        "file system that the code made or unpacked: an image (PNG, JPEG, GIF, WebP), a PDF or "
        "text, at most 8 MiB. Returns the model's answer as text.\",\"inputSchema\":{\"type\":"
        "\"object\",\"properties\":{\"session_id\":{\"type\":\"string\"},\"path\":{\"type\":"
        "\"string\",\"description\":\"The file, e.g. /output/chart.png\"},\"question\":{"
        "\"type\":\"string\",\"description\":\"What to ask about it\"}},\"required\":["
        "\"session_id\",\"path\",\"question\"]}}";
    cJSON *describe = cJSON_Parse(describe_definition);
    if (!cap_config_describe_enabled(server->config))
        cJSON_ReplaceItemInObjectCaseSensitive(
            describe, "description",
            cJSON_CreateString("Ask a model about a file in a session's file system that the code "
                               "made or unpacked: an image (PNG, JPEG, GIF, WebP), a PDF or text, "
                               "at most 8 MiB. Your client's own model answers when it offers "
                               "sampling (returned as text); otherwise the file itself is "
                               "returned (image or resource content) for you to look at."));
    cJSON_AddItemToArray(tools, describe);
    cJSON *run = cJSON_GetArrayItem(tools, 0);
    const cJSON *description = cJSON_GetObjectItemCaseSensitive(run, "description");
    const char *servers = server->code_mode_servers;
    if (servers[0] && cJSON_IsString(description)) {
        /* Code mode: the servers' names only; the tools are found in the sandbox. */
        char text[2048];
        snprintf(text, sizeof text, "%s Tools of these MCP servers are Python functions here: "
                 "%s. List /servers (one file per tool, /servers/<server>/<tool>.py, with its "
                 "signature and docstring) or call capsule.tools.search('words'); then `from "
                 "servers.<server> import <tool>` and call it with keyword arguments. Chain many "
                 "calls in one program.", description->valuestring, servers);
        cJSON_ReplaceItemInObjectCaseSensitive(run, "description", cJSON_CreateString(text));
        description = cJSON_GetObjectItemCaseSensitive(run, "description");
    }
    if (server->installs_packages && cJSON_IsString(description)) {
        char text[4096];
        snprintf(text, sizeof text, "%s Imported packages are installed before the code runs "
                 "(pure-Python ones only); a PEP 723 '# /// script' block with 'dependencies', "
                 "when present, decides instead.", description->valuestring);
        cJSON_ReplaceItemInObjectCaseSensitive(run, "description", cJSON_CreateString(text));
    }
    return tools;
}

/* A session id nobody can guess: SESSION_ID_BYTES from getrandom as hex
 * into `out` (2 * SESSION_ID_BYTES + 1 characters).  0, or -1. */
int mcp_random_session_id(char out[2 * SESSION_ID_BYTES + 1]) {
    unsigned char bytes[SESSION_ID_BYTES];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) return -1;
    for (size_t i = 0; i < sizeof bytes; i++) snprintf(out + 2 * i, 3, "%02x", bytes[i]);
    return 0;
}

/* The name under which the sandboxes and the route table know the session
 * a client calls `name`: its principal, a slash, the name.  So a session
 * belongs to the principal that started it, and another principal naming
 * the same id reaches a different (new or unknown) session, exactly as if
 * the id had never been used.  The caller frees it. */
static char *scoped_session(const mcp_client *client, const char *name) {
    size_t size = strlen(client->principal) + 1 + strlen(name) + 1;
    char *scoped = malloc(size);
    if (scoped) snprintf(scoped, size, "%s/%s", client->principal, name);
    return scoped;
}

/* Runs one of the fixed session programs in the session `scoped` (the
 * client calls it `name`); the tool result. */
cJSON *mcp_session_program(mcp_server *server, mcp_client *client, const char *id, const reply *to,
                           const char *scoped, const char *name, const char *code,
                           cJSON *arguments_for_guest) {
    cJSON *globals = cJSON_CreateObject();
    cJSON_AddItemToObject(globals, "__capsule_arguments__", arguments_for_guest);
    run_request request = {NULL, code, scoped, globals, NULL, 0, NULL};
    run_outcome outcome;
    mcp_run_code(server, client, id, to, NULL, &request, &outcome);
    cJSON_Delete(globals);
    free(outcome.output.data);
    if (!outcome.result) return mcp_tool_error(outcome.message);
    cJSON *tool_result;
    cap_status status = cap_result_status(outcome.result);
    if (status == CAP_STATUS_SUCCESS) {
        const char *value = cap_result_return_value(outcome.result);
        cJSON *parsed = value ? cJSON_Parse(value) : NULL;
        tool_result =
            mcp_tool_text(value ? value : "null", parsed && cJSON_IsObject(parsed) ? parsed : NULL);
        if (parsed && !cJSON_IsObject(parsed)) {
            cJSON *wrapped = cJSON_CreateObject();
            cJSON_AddItemToObject(wrapped, "result", parsed);
            cJSON_AddItemToObject(tool_result, "structuredContent", wrapped);
        }
    } else {
        char *error = mcp_unscope(cap_result_error(outcome.result), scoped, name);
        tool_result = mcp_tool_error(error ? error : cap_status_name(status));
        free(error);
    }
    cap_result_free(outcome.result);
    return tool_result;
}

/* help: cap_config_help over the server's config, for the client's
 * principal; the results as text (numbered, with their paths and
 * snippets) and as structuredContent. */
static cJSON *help_tool(mcp_server *server, mcp_client *client, const cJSON *arguments,
                        int *invalid) {
    const char *query = mcp_argument_string(arguments, "query");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(arguments, "limit");
    *invalid = 0;
    if (!query || (limit && !cJSON_IsNull(limit) &&
                   !(cJSON_IsNumber(limit) && limit->valuedouble >= 1 &&
                     limit->valuedouble <= 20 && limit->valuedouble == (int)limit->valuedouble))) {
        *invalid = 1;
        return NULL;
    }
    char error[CAP_ERROR_SIZE] = "";
    char *json = cap_config_help(server->config, client->principal, query,
                                 cJSON_IsNumber(limit) ? (int)limit->valuedouble : 0, error);
    cJSON *structured = json ? cJSON_Parse(json) : NULL;
    free(json);
    if (!structured) return mcp_tool_error(error[0] ? error : "help failed");
    buffer text = {0};
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(structured, "results");
    const cJSON *result;
    int number = 0;
    cJSON_ArrayForEach(result, results) {
        const cJSON *title = cJSON_GetObjectItemCaseSensitive(result, "title");
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(result, "path");
        const cJSON *snippet = cJSON_GetObjectItemCaseSensitive(result, "snippet");
        char head[1024];
        int n = snprintf(head, sizeof head, "%d. %s (%s)\n", ++number,
                         cJSON_IsString(title) ? title->valuestring : "",
                         cJSON_IsString(path) ? path->valuestring : "");
        buffer_append(&text, head, n < (int)sizeof head ? (size_t)n : sizeof head - 1);
        if (cJSON_IsString(snippet) && snippet->valuestring[0]) {
            buffer_append(&text, "   ", 3);
            buffer_append(&text, snippet->valuestring, strlen(snippet->valuestring));
            buffer_append(&text, "\n", 1);
        }
    }
    if (number == 0) buffer_append(&text, "no results", 10);
    buffer_append(&text, "", 1);
    cJSON *tool_result = mcp_tool_text(text.data ? text.data : "", structured);
    buffer_free(&text);
    return tool_result;
}

/* fork_session and session_history, offered when sessions are durable. */
static void durable_session_tool(mcp_server *server, mcp_client *client, const cJSON *id,
                                 const reply *to, const char *name, const char *scoped,
                                 const char *session) {
    char error[CAP_ERROR_SIZE];
    if (!server->durable) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS, "unknown tool (sessions are not durable: no store)");
        return;
    }
    if (strcmp(name, "session_history") == 0) {
        char *history = cap_session_history(server->config, scoped, error);
        cJSON *structured = history ? cJSON_Parse(history) : NULL;
        if (structured) {
            mcp_send_result(to, id, mcp_tool_text(history, structured));
        } else {
            char *shown = mcp_unscope(error, scoped, session);
            mcp_send_result(to, id, mcp_tool_error(shown ? shown : error));
            free(shown);
        }
        free(history);
        return;
    }
    char session_id[2 * SESSION_ID_BYTES + 1];
    char *minted = NULL;
    if (mcp_random_session_id(session_id) != 0 || !(minted = scoped_session(client, session_id))) {
        mcp_send_error(to, id, RPC_INTERNAL_ERROR, "no randomness for a session id");
        return;
    }
    if (cap_session_fork(server->config, scoped, minted, error) == CAP_OK) {
        cJSON *structured = cJSON_CreateObject();
        cJSON_AddStringToObject(structured, "session_id", session_id);
        mcp_send_result(to, id, mcp_tool_text(session_id, structured));
    } else {
        char *shown = mcp_unscope(error, scoped, session);
        mcp_send_result(to, id, mcp_tool_error(shown ? shown : error));
        free(shown);
    }
    free(minted);
}

void mcp_call_tool(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                   const cJSON *params) {
    const char *name = mcp_argument_string(params, "name");
    const cJSON *arguments = cJSON_GetObjectItemCaseSensitive(params, "arguments");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    const cJSON *progress_token = cJSON_GetObjectItemCaseSensitive(meta, "progressToken");
    if (progress_token && !mcp_is_valid_id(progress_token)) progress_token = NULL;
    if (!name) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS, "tools/call needs a tool name");
        return;
    }
    if (arguments && !cJSON_IsObject(arguments)) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS, "arguments must be an object");
        return;
    }
    char *id_text = cJSON_PrintUnformatted(id);
    const char *session = mcp_argument_string(arguments, "session_id");
    const cJSON *session_item = cJSON_GetObjectItemCaseSensitive(arguments, "session_id");
    char *scoped = session && strlen(session) <= MAX_SESSION_NAME
                       ? scoped_session(client, session)
                       : NULL;
    if (session_item && !cJSON_IsNull(session_item) && !session) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS, "session_id must be a string");
    } else if (session && strlen(session) > MAX_SESSION_NAME) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS, "session_id is too long");
    } else if (session && !scoped) {
        mcp_send_error(to, id, RPC_INTERNAL_ERROR, "out of memory");
    } else if (strcmp(name, "help") == 0) {
        int invalid;
        cJSON *result = help_tool(server, client, arguments, &invalid);
        if (invalid)
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "help needs query (a string) and a limit of 1 to 20");
        else
            mcp_send_result(to, id, result);
    } else if (strcmp(name, "run_python_code") == 0) {
        const char *code = mcp_argument_string(arguments, "python_code");
        const cJSON *globals = cJSON_GetObjectItemCaseSensitive(arguments, "global_variables");
        const cJSON *timeout = cJSON_GetObjectItemCaseSensitive(arguments, "timeout_seconds");
        const cJSON *files = cJSON_GetObjectItemCaseSensitive(arguments, "files");
        if (!code) {
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "run_python_code needs python_code (a string)");
        } else if (globals && !cJSON_IsNull(globals) && !cJSON_IsObject(globals)) {
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "global_variables must be an object");
        } else if (timeout && !(cJSON_IsNumber(timeout) && timeout->valuedouble > 0)) {
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "timeout_seconds must be a positive number");
        } else if (mcp_becomes_task(to, params)) {
            mcp_start_task(server, client, id, to, params);
        } else {
            approval_state approval = {0};
            char message[CAP_ERROR_SIZE];
            if (to->stateless) {
                approval.can_ask = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(
                    to->stateless->capabilities, "elicitation"));
                approval.approved = cJSON_CreateArray();
                approval.declined = cJSON_CreateArray();
            }
            run_request request = {to->stateless ? &approval : NULL, code, scoped,
                                   cJSON_IsObject(globals) ? globals : NULL,
                                   cJSON_IsNull(files) ? NULL : files,
                                   timeout ? timeout->valuedouble : 0,
                                   mcp_argument_string(arguments, "idempotency_key")};
            run_outcome outcome = {0};
            cJSON *asking = NULL;
            int rejected = to->stateless && mcp_resume_approval(server, client, params, arguments,
                                                                &approval, message) != 0;
            if (rejected) {
                mcp_send_error(to, id, RPC_INVALID_PARAMS, message);
            } else {
                mcp_run_code(server, client, id_text, to, progress_token, &request, &outcome);
                if (outcome.result && approval.ask_function)
                    asking = mcp_approval_request(server, client, arguments, &approval);
            }
            if (asking) {
                mcp_send_result(to, id, asking);
                cap_result_free(outcome.result);
            } else if (outcome.result) {
                mcp_send_result(
                    to, id,
                    mcp_format_run_result(outcome.result, &outcome.output, scoped, session));
                cap_result_free(outcome.result);
            } else if (outcome.busy) {
                mcp_send_error(to, id, RPC_SERVER_BUSY, outcome.message);
            } else if (!rejected) {
                mcp_send_result(to, id, mcp_tool_error(outcome.message));
            }
            free(outcome.output.data);
            cJSON_Delete(approval.approved);
            cJSON_Delete(approval.declined);
            free(approval.ask_function);
            free(approval.ask_arguments);
        }
    } else if (mcp_is_job_tool(name)) {
        mcp_job_tool(server, client, id, to, name, arguments);
    } else if (strcmp(name, "create_session") == 0) {
        char session_id[2 * SESSION_ID_BYTES + 1];
        char *minted = NULL;
        if (mcp_random_session_id(session_id) != 0 || !(minted = scoped_session(client, session_id))) {
            mcp_send_error(to, id, RPC_INTERNAL_ERROR, "no randomness for a session id");
        } else {
            /* A first run creates the session in its sandbox. */
            run_request request = {NULL, "pass", minted, NULL, NULL, 0, NULL};
            run_outcome outcome;
            mcp_run_code(server, client, id_text, to, NULL, &request, &outcome);
            free(outcome.output.data);
            if (outcome.result && cap_result_status(outcome.result) == CAP_STATUS_SUCCESS) {
                cJSON *structured = cJSON_CreateObject();
                cJSON_AddStringToObject(structured, "session_id", session_id);
                mcp_send_result(to, id, mcp_tool_text(session_id, structured));
            } else if (outcome.busy) {
                mcp_send_error(to, id, RPC_SERVER_BUSY, outcome.message);
            } else {
                char *error =
                    mcp_unscope(outcome.result ? cap_result_error(outcome.result) : outcome.message,
                                minted, session_id);
                mcp_send_result(to, id, mcp_tool_error(error ? error : "out of memory"));
                free(error);
            }
            cap_result_free(outcome.result);
        }
        free(minted);
    } else if (!session) {
        if (strcmp(name, "close_session") == 0 || strcmp(name, "list_files") == 0 ||
            strcmp(name, "read_file") == 0 || strcmp(name, "write_file") == 0 ||
            strcmp(name, "describe") == 0)
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "this tool needs session_id");
        else
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "unknown tool");
    } else if (strcmp(name, "fork_session") == 0 || strcmp(name, "session_history") == 0) {
        durable_session_tool(server, client, id, to, name, scoped, session);
    } else if (strcmp(name, "describe") == 0) {
        const char *path = mcp_argument_string(arguments, "path");
        const char *question = mcp_argument_string(arguments, "question");
        if (!path || !question)
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "describe needs path and question");
        else
            mcp_describe_tool(server, client, id, id_text, to, params, scoped, session, path,
                              question);
    } else if (strcmp(name, "close_session") == 0) {
        pthread_mutex_lock(&server->lock);
        int slot_index = mcp_session_known(server, scoped) ? mcp_route_session(server, scoped) : -1;
        pthread_mutex_unlock(&server->lock);
        char error[CAP_ERROR_SIZE] = "no such session";
        int closed = 0;
        if (slot_index >= 0) {
            int taken = mcp_acquire_slot(server, client, id_text, scoped);
            if (taken >= 0) {
                closed = cap_session_close(server->slots[taken].sandbox, scoped, error) == CAP_OK;
                pthread_mutex_lock(&server->lock);
                mcp_forget_route(server, scoped);
                pthread_mutex_unlock(&server->lock);
                mcp_release_slot(server, client, taken);
            }
        }
        char *shown = mcp_unscope(error, scoped, session);
        mcp_send_result(to, id, closed ? mcp_tool_text("closed", NULL) : mcp_tool_error(shown ? shown : error));
        free(shown);
    } else if (strcmp(name, "list_files") == 0 || strcmp(name, "read_file") == 0 ||
               strcmp(name, "write_file") == 0) {
        const char *path = mcp_argument_string(arguments, "path");
        const char *content = mcp_argument_string(arguments, "content");
        const char *encoding = mcp_argument_string(arguments, "encoding");
        int listing = strcmp(name, "list_files") == 0, writing = strcmp(name, "write_file") == 0;
        if (!path && listing) path = "/work";
        if (!path || (writing && !content)) {
            mcp_send_error(to, id, RPC_INVALID_PARAMS,
                           writing ? "write_file needs path and content"
                                   : "this tool needs a path");
        } else if (encoding && strcmp(encoding, "utf-8") != 0 && strcmp(encoding, "base64") != 0) {
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "encoding must be utf-8 or base64");
        } else {
            pthread_mutex_lock(&server->lock);
            int known = mcp_session_known(server, scoped);
            pthread_mutex_unlock(&server->lock);
            if (!known) {
                mcp_send_result(to, id, mcp_tool_error("no such session; create one with create_session"));
            } else {
                cJSON *guest_arguments = cJSON_CreateObject();
                cJSON_AddStringToObject(guest_arguments, "path", path);
                if (writing) {
                    cJSON_AddStringToObject(guest_arguments, "data", content);
                    cJSON_AddStringToObject(guest_arguments, "encoding",
                                            encoding ? encoding : "utf-8");
                }
                const char *code = listing ? list_files_code
                                   : writing ? write_file_code
                                             : read_file_expression;
                mcp_send_result(to, id,
                                mcp_session_program(server, client, id_text, to, scoped, session,
                                                    code, guest_arguments));
            }
        }
    } else {
        mcp_send_error(to, id, RPC_INVALID_PARAMS, "unknown tool");
    }
    free(scoped);
    free(id_text);
}
