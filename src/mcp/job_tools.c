/*
 * The durable jobs' tools (src/sandbox/jobs.c runs the jobs): submit_job,
 * get_job, cancel_job, list_jobs and emit_event, each for the caller's
 * principal.
 */
#include "server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mcp_is_job_tool(const char *name) {
    static const char *const names[] = {"submit_job", "get_job", "cancel_job", "list_jobs",
                                        "emit_event"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(name, names[i]) == 0) return 1;
    return 0;
}

/* A job's JSON text as a tool result (text and structured content). */
static cJSON *job_result(char *json, const char *error) {
    cJSON *structured = json ? cJSON_Parse(json) : NULL;
    cJSON *result = structured ? mcp_tool_text(json, structured) : mcp_tool_error(error);
    free(json);
    return result;
}

/* The job tools, offered when the server has a store.  A job belongs to
 * the principal that submitted it: every tool passes the caller's, so
 * another principal's job reads as "no job". */
void mcp_job_tool(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                  const char *name, const cJSON *arguments) {
    char error[CAP_ERROR_SIZE] = "";
    cap_config *config = server->config;
    const char *principal = client->principal;
    if (!server->durable) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS, "unknown tool (jobs need a store)");
        return;
    }
    if (strcmp(name, "submit_job") == 0) {
        const char *code = mcp_argument_string(arguments, "code");
        const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(arguments, "max_attempts");
        const cJSON *timeout = cJSON_GetObjectItemCaseSensitive(arguments, "timeout_seconds");
        const cJSON *backoff = cJSON_GetObjectItemCaseSensitive(arguments, "backoff");
        if (!code || (attempts && !(cJSON_IsNumber(attempts) && attempts->valuedouble >= 1 &&
                                    attempts->valuedouble <= 1000)) ||
            (timeout && !(cJSON_IsNumber(timeout) && timeout->valuedouble > 0)) ||
            (backoff && !(cJSON_IsNumber(backoff) && backoff->valuedouble >= 0))) {
            mcp_send_error(
                to, id, RPC_INVALID_PARAMS,
                "submit_job needs code (a string); max_attempts 1 to 1000, timeout_seconds "
                "> 0 and backoff >= 0 when given");
            return;
        }
        double timeout_seconds = timeout ? timeout->valuedouble : 0;
        /* No attempt outlasts the server's own wall-clock limit. */
        if (server->limits.wall_seconds > 0 &&
            (!timeout_seconds || timeout_seconds > server->limits.wall_seconds))
            timeout_seconds = server->limits.wall_seconds;
        cap_job_options options = {
            .principal = principal,
            .queue = mcp_argument_string(arguments, "queue"),
            .idempotency_key = mcp_argument_string(arguments, "idempotency_key"),
            .max_attempts = attempts ? (int)attempts->valuedouble : 0,
            .timeout_seconds = timeout_seconds,
            .backoff_seconds = !backoff ? 0 : backoff->valuedouble > 0 ? backoff->valuedouble : -1};
        char *json = NULL;
        cap_job_submit(config, code, &options, &json, error);
        mcp_send_result(to, id, job_result(json, error));
    } else if (strcmp(name, "get_job") == 0 || strcmp(name, "cancel_job") == 0) {
        const char *job = mcp_argument_string(arguments, "job_id");
        if (!job) {
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "this tool needs job_id (a string)");
            return;
        }
        char *json = NULL;
        if (name[0] == 'g') json = cap_job_get(config, job, principal, error);
        else cap_job_cancel(config, job, principal, &json, error);
        mcp_send_result(to, id, job_result(json, error));
    } else if (strcmp(name, "list_jobs") == 0) {
        const cJSON *limit = cJSON_GetObjectItemCaseSensitive(arguments, "limit");
        if (limit && !(cJSON_IsNumber(limit) && limit->valuedouble >= 1 &&
                       limit->valuedouble <= 1000)) {
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "limit must be 1 to 1000");
            return;
        }
        char *json = cap_job_list(config, principal, mcp_argument_string(arguments, "status"),
                                  limit ? (size_t)limit->valuedouble : 0, error);
        cJSON *jobs = json ? cJSON_Parse(json) : NULL;
        if (jobs) {
            cJSON *structured = cJSON_CreateObject();
            cJSON_AddItemToObject(structured, "jobs", jobs);
            mcp_send_result(to, id, mcp_tool_text(json, structured));
        } else {
            mcp_send_result(to, id, mcp_tool_error(error));
        }
        free(json);
    } else {
        const char *event = mcp_argument_string(arguments, "name");
        const cJSON *payload = cJSON_GetObjectItemCaseSensitive(arguments, "payload");
        if (!event) {
            mcp_send_error(to, id, RPC_INVALID_PARAMS, "emit_event needs name (a string)");
            return;
        }
        char *payload_json = payload ? cJSON_PrintUnformatted(payload) : NULL;
        int woken = 0;
        if (cap_job_emit(config, principal, event, payload_json, &woken, error) == CAP_OK) {
            cJSON *structured = cJSON_CreateObject();
            cJSON_AddNumberToObject(structured, "woken", woken);
            char text[64];
            snprintf(text, sizeof text, "emitted; %d waiting jobs woken", woken);
            mcp_send_result(to, id, mcp_tool_text(text, structured));
        } else {
            mcp_send_result(to, id, mcp_tool_error(error));
        }
        free(payload_json);
    }
}
