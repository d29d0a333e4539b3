/*
 * 2026-07-28's input_required rounds: what the server needs to remember
 * between a round and its retry travels with the client as requestState,
 * signed with the server's key so that a tampered or foreign state is
 * refused.
 */
#include "server_internal.h"

#include "../libraries/digest.h"
#include "../sandbox/buffer.h" /* base64_encode */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* requestState: host-function approval over input_required.
 *
 * In 2026-07-28 a server does not send requests to the client; it answers
 * with an input_required result instead, and the client retries the call
 * with its answers (inputResponses) and the requestState it was given.
 * capsule uses it for host functions that need approval
 * (cap_config_require_approval): run_python_code runs the code, refusing
 * every call not yet approved; if one was refused and the client declared
 * elicitation, the result is an elicitation asking for it, and the retry
 * runs the code again from the start with that call approved.  The
 * requestState holds what was approved, so it is signed: a client that
 * alters it, or replays it for other arguments, as another principal, or
 * at another server (or after a restart), gets an error. */

static char *base64url(const unsigned char *data, size_t size) {
    char *out = base64_encode(data, size);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; out[i]; i++) {
        if (out[i] == '=') continue;
        out[o++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    out[o] = '\0';
    return out;
}

static void state_mac(const mcp_server *server, const char *payload, size_t size,
                      unsigned char mac[DIGEST_BYTES]) {
    digest_hmac_sha256(server->state_key, sizeof server->state_key, payload, size, mac);
}

/* "PAYLOAD.MAC": base64url of the payload's JSON, and of its HMAC-SHA256. */
char *mcp_sign_state(const mcp_server *server, const cJSON *payload) {
    char *json = cJSON_PrintUnformatted(payload);
    char *encoded = json ? base64url((const unsigned char *)json, strlen(json)) : NULL;
    free(json);
    unsigned char mac[DIGEST_BYTES];
    char *mac_text = NULL, *state = NULL;
    if (encoded) state_mac(server, encoded, strlen(encoded), mac);
    if (encoded && (mac_text = base64url(mac, sizeof mac))) {
        size_t size = strlen(encoded) + 1 + strlen(mac_text) + 1;
        if ((state = malloc(size))) snprintf(state, size, "%s.%s", encoded, mac_text);
    }
    free(encoded);
    free(mac_text);
    return state;
}

/* The payload of a state this server signed, or NULL (compared in constant
 * time, so the MAC cannot be found a byte at a time). */
static cJSON *verify_state(const mcp_server *server, const char *state) {
    const char *dot = strrchr(state, '.');
    if (!dot || dot == state) return NULL;
    unsigned char mac[DIGEST_BYTES];
    size_t given_size = 0;
    unsigned char *given = base64_decode(dot + 1, &given_size);
    state_mac(server, state, (size_t)(dot - state), mac);
    int valid = given && given_size == sizeof mac && digest_equal(mac, given, sizeof mac);
    free(given);
    if (!valid) return NULL;
    char *encoded = strndup(state, (size_t)(dot - state));
    size_t size = 0;
    unsigned char *json = encoded ? base64_decode(encoded, &size) : NULL;
    free(encoded);
    cJSON *payload = json ? cJSON_ParseWithLength((const char *)json, size) : NULL;
    free(json);
    return payload;
}

/* SHA-256 (hex) of the call's arguments as sent: a state is good only for
 * the call it was issued for. */
static void arguments_digest(const cJSON *arguments, char out[65]) {
    char *text = arguments ? cJSON_PrintUnformatted(arguments) : NULL;
    const char *data = text ? text : "null";
    digest_sha256_hex(data, strlen(data), out);
    free(text);
}

static void add_pair(cJSON *pairs, const char *function, const char *arguments) {
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString(function));
    cJSON_AddItemToArray(pair, cJSON_CreateString(arguments));
    cJSON_AddItemToArray(pairs, pair);
}

/* What every retried call's requestState must satisfy: inputResponses, if
 * any, an object; the state a string this server signed (verify_state),
 * for `tool`, for this client's principal and these very arguments, not
 * expired.  0 with *payload NULL when the call carries no state; 0 with
 * *payload (the caller deletes it) when it verifies; -1 with `message`
 * otherwise (the retry is not a call this server issued). */
int mcp_verified_state(const mcp_server *server, const mcp_client *client, const cJSON *params,
                       const cJSON *arguments, const char *tool, cJSON **payload_out,
                       char *message) {
    *payload_out = NULL;
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(params, "requestState");
    const cJSON *responses = cJSON_GetObjectItemCaseSensitive(params, "inputResponses");
    if (responses && !cJSON_IsObject(responses)) {
        snprintf(message, CAP_ERROR_SIZE, "inputResponses must be an object");
        return -1;
    }
    if (!state || cJSON_IsNull(state)) return 0; /* nothing was asked: answers are ignored */
    if (!cJSON_IsString(state)) {
        snprintf(message, CAP_ERROR_SIZE, "requestState must be a string");
        return -1;
    }
    cJSON *payload = verify_state(server, state->valuestring);
    char digest[65];
    arguments_digest(arguments, digest);
    const char *signed_tool = mcp_argument_string(payload, "tool");
    const char *principal = mcp_argument_string(payload, "principal");
    const char *digested = mcp_argument_string(payload, "arguments");
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(payload, "expires");
    if (!payload || !signed_tool || strcmp(signed_tool, tool) != 0 || !principal ||
        strcmp(principal, client->principal) != 0 || !digested || strcmp(digested, digest) != 0 ||
        !cJSON_IsNumber(expires) || expires->valuedouble < (double)time(NULL)) {
        snprintf(message, CAP_ERROR_SIZE,
                 "requestState rejected: it does not verify as one this server issued for this "
                 "%s call (altered, expired, from another server or client, or for other "
                 "arguments); call again without requestState", tool);
        cJSON_Delete(payload);
        return -1;
    }
    *payload_out = payload;
    return 0;
}

/* A retried run_python_code: verifies its requestState and takes the
 * client's answer from inputResponses into `approval`.  0; or -1 with
 * `message` when the state does not verify or the answer is malformed (a
 * JSON-RPC error: the retry is not a call the server issued). */
int mcp_resume_approval(const mcp_server *server, const mcp_client *client, const cJSON *params,
                        const cJSON *arguments, approval_state *approval, char *message) {
    cJSON *payload;
    if (mcp_verified_state(server, client, params, arguments, "run_python_code", &payload,
                           message) != 0)
        return -1;
    if (!payload) return 0;
    const cJSON *responses = cJSON_GetObjectItemCaseSensitive(params, "inputResponses");
    const char *key = mcp_argument_string(payload, "key");
    const cJSON *ask = cJSON_GetObjectItemCaseSensitive(payload, "ask");
    cJSON *approved = cJSON_DetachItemFromObjectCaseSensitive(payload, "approved");
    cJSON *declined = cJSON_DetachItemFromObjectCaseSensitive(payload, "declined");
    const cJSON *function = cJSON_GetArrayItem(ask, 0);
    const cJSON *function_arguments = cJSON_GetArrayItem(ask, 1);
    if (!key || !cJSON_IsArray(approved) || !cJSON_IsArray(declined) ||
        !cJSON_IsString(function) || !cJSON_IsString(function_arguments)) {
        snprintf(message, CAP_ERROR_SIZE,
                 "requestState rejected: it does not verify as one this server issued for this "
                 "call (altered, expired, from another server or client, or for other "
                 "arguments); call again without requestState");
        cJSON_Delete(approved);
        cJSON_Delete(declined);
        cJSON_Delete(payload);
        return -1;
    }
    cJSON_Delete(approval->approved);
    cJSON_Delete(approval->declined);
    approval->approved = approved;
    approval->declined = declined;
    const cJSON *answer = cJSON_GetObjectItemCaseSensitive(responses, key);
    int failed = 0;
    if (answer && !cJSON_IsObject(answer)) {
        snprintf(message, CAP_ERROR_SIZE,
                 "inputResponses.%.64s must be the result of elicitation/create (an object)", key);
        failed = 1;
    } else if (answer) {
        const char *action = mcp_argument_string(answer, "action");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(answer, "content");
        int yes = action && strcmp(action, "accept") == 0 &&
                  cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(content, "approve"));
        add_pair(yes ? approved : declined, function->valuestring,
                 function_arguments->valuestring);
    } /* no answer: the call is asked again */
    if (cJSON_GetArraySize(approved) + cJSON_GetArraySize(declined) >= MAX_APPROVALS)
        approval->can_ask = 0;
    cJSON_Delete(payload);
    return failed ? -1 : 0;
}

/* A state's common fields, as mcp_verified_state checks them: the version,
 * the tool, the client's principal, a digest of the call's arguments and
 * an expiry.  The caller adds its own fields, then signs it. */
cJSON *mcp_new_state_payload(const mcp_client *client, const cJSON *arguments, const char *tool) {
    char digest[65];
    arguments_digest(arguments, digest);
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddNumberToObject(payload, "v", 1);
    cJSON_AddStringToObject(payload, "tool", tool);
    cJSON_AddStringToObject(payload, "principal", client->principal);
    cJSON_AddStringToObject(payload, "arguments", digest);
    cJSON_AddNumberToObject(payload, "expires", (double)time(NULL) + STATE_SECONDS);
    return payload;
}

/* The input_required result asking the client to approve the call the run
 * was refused, with the signed state of this round. */
cJSON *mcp_approval_request(const mcp_server *server, const mcp_client *client,
                            const cJSON *arguments, const approval_state *approval) {
    char key[40];
    snprintf(key, sizeof key, "approve_call_%d",
             cJSON_GetArraySize(approval->approved) + cJSON_GetArraySize(approval->declined) + 1);
    cJSON *payload = mcp_new_state_payload(client, arguments, "run_python_code");
    cJSON_AddStringToObject(payload, "key", key);
    cJSON *ask = cJSON_AddArrayToObject(payload, "ask");
    cJSON_AddItemToArray(ask, cJSON_CreateString(approval->ask_function));
    cJSON_AddItemToArray(ask, cJSON_CreateString(approval->ask_arguments));
    cJSON_AddItemToObject(payload, "approved", cJSON_Duplicate(approval->approved, 1));
    cJSON_AddItemToObject(payload, "declined", cJSON_Duplicate(approval->declined, 1));
    char *state = mcp_sign_state(server, payload);
    cJSON_Delete(payload);
    if (!state) return NULL;

    cJSON *result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "resultType", "input_required");
    cJSON *requests = cJSON_AddObjectToObject(result, "inputRequests");
    cJSON *request = cJSON_AddObjectToObject(requests, key);
    cJSON_AddStringToObject(request, "method", "elicitation/create");
    cJSON *params = cJSON_AddObjectToObject(request, "params");
    char question[1024];
    mcp_approval_question(approval->ask_function, approval->ask_arguments, question, sizeof question);
    cJSON_AddStringToObject(params, "message", question);
    cJSON_AddItemToObject(params, "requestedSchema", mcp_approval_schema());
    cJSON_AddStringToObject(result, "requestState", state);
    free(state);
    return result;
}
