/*
 * The describe tool: a question about a file of a session, answered by the
 * configured endpoint, the client's own model (sampling, or input_required
 * in 2026-07-28), or the file itself for the calling model to look at.
 */
#include "server_internal.h"

#include "../sandbox/buffer.h"

#include "../help/describe.h" /* describe_read_program: the session reads the file */
#include "../help/describe_media.h"
#include "describe_client.h"
#include "../libraries/digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* describe: the endpoint, the client's model, or the file itself.
 *
 * The backends in order: the configured endpoint (describe.c); the
 * client's own model, asked with sampling/createMessage (a legacy client
 * that declared sampling, now, on the call's stream; a 2026-07-28 client,
 * with an input_required result and a signed requestState naming the
 * session, the path and a hash of the file's bytes, so that the retry's
 * answer is used only for the same file); else the file itself, returned
 * as content for the calling model to look at. */

#define DESCRIBE_KEY "describe_sampling"

/* The file's bytes read by describe_read_program (describe.c: a large image
 * first shrunk by the guest's Pillow), or NULL with *error_result
 * (a tool result) set. */
static unsigned char *read_for_describe(mcp_server *server, mcp_client *client,
                                        const char *id_text, const reply *to, const char *scoped,
                                        const char *session, const char *path, size_t *size,
                                        cJSON **error_result) {
    *error_result = NULL;
    pthread_mutex_lock(&server->lock);
    int known = mcp_session_known(server, scoped);
    pthread_mutex_unlock(&server->lock);
    if (!known) {
        *error_result = mcp_tool_error("no such session; create one with create_session");
        return NULL;
    }
    cJSON *guest_arguments = cJSON_CreateObject();
    cJSON_AddStringToObject(guest_arguments, "path", path);
    cJSON *read = mcp_session_program(server, client, id_text, to, scoped, session,
                                      describe_read_program, guest_arguments);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(read, "isError"))) {
        *error_result = read;
        return NULL;
    }
    const cJSON *structured = cJSON_GetObjectItemCaseSensitive(read, "structuredContent");
    const cJSON *encoded = cJSON_GetObjectItemCaseSensitive(structured, "base64");
    const cJSON *too_large = cJSON_GetObjectItemCaseSensitive(structured, "size");
    const cJSON *refused = cJSON_GetObjectItemCaseSensitive(structured, "error");
    unsigned char *data = cJSON_IsString(encoded) ? base64_decode(encoded->valuestring, size)
                                                  : NULL;
    if (!data) {
        char error[CAP_ERROR_SIZE];
        if (cJSON_IsString(refused)) /* e.g. an image too large that could not be shrunk */
            snprintf(error, sizeof error, "describe: %.60s: %.150s", path, refused->valuestring);
        else if (cJSON_IsNumber(too_large))
            snprintf(error, sizeof error, "describe: %.100s has %.0f bytes, more than the 8 MiB a "
                     "file may have", path, too_large->valuedouble);
        else
            snprintf(error, sizeof error, "describe: %.100s could not be read", path);
        *error_result = mcp_tool_error(error);
    }
    cJSON_Delete(read);
    return data;
}

/* A retried 2026-07-28 describe: the payload of its requestState when it
 * verifies as one this server issued for this call of this client (NULL
 * when the call has none); -1 with `message` when it does not verify. */
static int resume_describe(const mcp_server *server, const mcp_client *client,
                           const cJSON *params, const cJSON *arguments, cJSON **payload_out,
                           char *message) {
    if (mcp_verified_state(server, client, params, arguments, "describe", payload_out, message) != 0)
        return -1;
    if (*payload_out && !mcp_argument_string(*payload_out, "sha256")) {
        snprintf(message, CAP_ERROR_SIZE,
                 "requestState rejected: it does not verify as one this server issued for this "
                 "describe call; call again without requestState");
        cJSON_Delete(*payload_out);
        *payload_out = NULL;
        return -1;
    }
    return 0;
}

/* The input_required result asking a 2026-07-28 client's model about the
 * file; NULL when out of memory. */
static cJSON *describe_request(const mcp_server *server, const mcp_client *client,
                               const cJSON *arguments, const char *scoped, const char *path,
                               const char *file_digest, cJSON *sampling) {
    cJSON *payload = mcp_new_state_payload(client, arguments, "describe");
    cJSON_AddStringToObject(payload, "session", scoped);
    cJSON_AddStringToObject(payload, "path", path);
    cJSON_AddStringToObject(payload, "sha256", file_digest);
    char *state = mcp_sign_state(server, payload);
    cJSON_Delete(payload);
    if (!state) {
        cJSON_Delete(sampling);
        return NULL;
    }
    cJSON *result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "resultType", "input_required");
    cJSON *request = cJSON_AddObjectToObject(cJSON_AddObjectToObject(result, "inputRequests"),
                                             DESCRIBE_KEY);
    cJSON_AddStringToObject(request, "method", "sampling/createMessage");
    cJSON_AddItemToObject(request, "params", sampling);
    cJSON_AddStringToObject(result, "requestState", state);
    free(state);
    return result;
}

/* The tool result of the client model's answer (a sampling result). */
static cJSON *describe_answer(const cJSON *sampled, const char *media_type) {
    char error[CAP_ERROR_SIZE];
    char *text = describe_client_answer(sampled, error);
    if (!text) return mcp_tool_error(error);
    cJSON *structured = cJSON_CreateObject();
    cJSON_AddStringToObject(structured, "answer", text);
    cJSON_AddStringToObject(structured, "media_type", media_type);
    const char *model = mcp_argument_string(sampled, "model");
    cJSON_AddStringToObject(structured, "model", model ? model : "client");
    cJSON_AddStringToObject(structured, "backend", "client");
    cJSON *result = mcp_tool_text(text, structured);
    free(text);
    return result;
}

/* The describe tool: the file, then the first backend there is. */
void mcp_describe_tool(mcp_server *server, mcp_client *client, const cJSON *id, const char *id_text,
                       const reply *to, const cJSON *params, const char *scoped,
                       const char *session, const char *path, const char *question) {
    const cJSON *arguments = cJSON_GetObjectItemCaseSensitive(params, "arguments");
    int endpoint = cap_config_describe_enabled(server->config);
    char error[CAP_ERROR_SIZE] = "";
    cJSON *resumed = NULL;
    if (to->stateless && !endpoint &&
        resume_describe(server, client, params, arguments, &resumed, error) != 0) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS, error); /* the retry is not a call we issued */
        return;
    }
    size_t size = 0;
    cJSON *result = NULL;
    unsigned char *data = read_for_describe(server, client, id_text, to, scoped, session, path,
                                            &size, &result);
    const char *media_type = data && !endpoint ? describe_check_file(data, size, question, error)
                                               : NULL;
    if (!data) {
        /* result: why the file could not be read */
    } else if (endpoint) {
        char *json = cap_config_describe(server->config, data, size, path, question, 0, error);
        cJSON *answer = json ? cJSON_Parse(json) : NULL;
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(answer, "answer");
        result = cJSON_IsString(text) ? mcp_tool_text(text->valuestring, answer)
                                      : mcp_tool_error(error[0] ? error : "describe failed");
        if (!cJSON_IsString(text)) cJSON_Delete(answer);
        free(json);
    } else if (!media_type) {
        result = mcp_tool_error(error);
    } else {
        int samplable = strcmp(media_type, "application/pdf") != 0; /* sampling has no PDF */
        char digest[65];
        digest_sha256_hex(data, size, digest);
        const cJSON *responses = cJSON_GetObjectItemCaseSensitive(params, "inputResponses");
        const cJSON *sampled = cJSON_GetObjectItemCaseSensitive(responses, DESCRIBE_KEY);
        if (resumed && strcmp(mcp_argument_string(resumed, "sha256"), digest) != 0) {
            result = mcp_tool_error("describe: the file changed after the client's model was asked "
                                    "about it, so the answer is not used; call describe again");
        } else if (resumed && sampled) {
            result = cJSON_IsObject(sampled)
                         ? describe_answer(sampled, media_type)
                         : mcp_tool_error("describe: inputResponses." DESCRIBE_KEY " must be the "
                                          "result of sampling/createMessage (an object)");
        } else if (to->stateless && samplable &&
                   cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(to->stateless->capabilities,
                                                                   "sampling"))) {
            cJSON *sampling =
                describe_client_sampling(data, size, media_type, path, question, error);
            result = sampling ? describe_request(server, client, arguments, scoped, path, digest,
                                                 sampling)
                              : NULL;
            if (!result) result = mcp_tool_error(error[0] ? error : "out of memory");
        } else if (!to->stateless && samplable && to->can_ask && client->can_sample) {
            cJSON *sampling =
                describe_client_sampling(data, size, media_type, path, question, error);
            cJSON *sampled_now = NULL;
            char message[CAP_ERROR_SIZE];
            if (!sampling) {
                result = mcp_tool_error(error);
            } else if (ask_request(client->asks, id_text, to->send, to->context,
                                   "sampling/createMessage", sampling, SAMPLING_SECONDS,
                                   &sampled_now, message) != ASK_OK) {
                snprintf(error, sizeof error, "describe: the client's model (sampling): %.180s",
                         message);
                result = mcp_tool_error(error);
            } else {
                result = describe_answer(sampled_now, media_type);
            }
            cJSON_Delete(sampled_now);
        } else {
            result = describe_client_fallback(data, size, media_type, path, question);
        }
    }
    free(data);
    cJSON_Delete(resumed);
    mcp_send_result(to, id, result);
}
