/*
 * ask.c — the server's requests to a client during a tool call, and the
 * table of those still waiting for their answer (ask.h).
 *
 * One mutex and one condition variable per client: waits are few (at most
 * ASK_MAX_PENDING) and short-lived, so a broadcast that wakes them all is
 * simpler than a condition per request and costs nothing that matters.
 */
#include "ask.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct pending {
    int used;
    char id[32];        /* the request's id as we sent it: "capsule-N" */
    char *call_id;      /* the tools/call it belongs to (JSON text), or NULL */
    int done;           /* an outcome is set */
    ask_outcome outcome;
    cJSON *result;      /* ASK_OK: the response's result */
    char message[CAP_ERROR_SIZE];
} pending;

struct ask_table {
    pthread_mutex_t lock;
    pthread_cond_t answered; /* broadcast on every answer, cancel and close */
    pending slots[ASK_MAX_PENDING];
    unsigned long long next_id;
    int closed;
};

ask_table *ask_table_new(void) {
    ask_table *table = calloc(1, sizeof *table);
    if (!table) return NULL;
    pthread_mutex_init(&table->lock, NULL);
    /* Waits are measured on the monotonic clock: a change of the wall
     * clock must not make an approval wait for hours or not at all. */
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&table->answered, &attributes);
    pthread_condattr_destroy(&attributes);
    return table;
}

void ask_table_free(ask_table *table) {
    if (!table) return;
    for (int i = 0; i < ASK_MAX_PENDING; i++) {
        free(table->slots[i].call_id);
        cJSON_Delete(table->slots[i].result);
    }
    pthread_cond_destroy(&table->answered);
    pthread_mutex_destroy(&table->lock);
    free(table);
}

static void finish(pending *p, ask_outcome outcome, const char *message) {
    p->done = 1;
    p->outcome = outcome;
    snprintf(p->message, sizeof p->message, "%s", message);
}

ask_outcome ask_request(ask_table *table, const char *call_id, mcp_send_fn send, void *context,
                        const char *method, cJSON *params, double timeout_seconds,
                        cJSON **result, char *error) {
    *result = NULL;
    pthread_mutex_lock(&table->lock);
    pending *p = NULL;
    for (int i = 0; i < ASK_MAX_PENDING && !p && !table->closed; i++)
        if (!table->slots[i].used) p = &table->slots[i];
    if (!p) {
        int closed = table->closed;
        pthread_mutex_unlock(&table->lock);
        cJSON_Delete(params);
        snprintf(error, CAP_ERROR_SIZE, closed ? "the client is gone"
                 : "the client already has %d requests of this server unanswered",
                 ASK_MAX_PENDING);
        return closed ? ASK_GONE : ASK_BUSY;
    }
    memset(p, 0, sizeof *p);
    p->used = 1;
    snprintf(p->id, sizeof p->id, "capsule-%llu", ++table->next_id);
    p->call_id = call_id ? strdup(call_id) : NULL;
    pthread_mutex_unlock(&table->lock);

    /* Registered before it is sent, so that an answer faster than this
     * thread still finds its request. */
    cJSON *message = cJSON_CreateObject();
    cJSON_AddStringToObject(message, "jsonrpc", "2.0");
    cJSON_AddStringToObject(message, "id", p->id);
    cJSON_AddStringToObject(message, "method", method);
    cJSON_AddItemToObject(message, "params", params);
    char *text = cJSON_PrintUnformatted(message);
    cJSON_Delete(message);
    if (text) send(context, text);
    free(text);

    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    double whole = timeout_seconds > 0 ? timeout_seconds : 0;
    deadline.tv_sec += (time_t)whole;
    deadline.tv_nsec += (long)((whole - (double)(time_t)whole) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&table->lock);
    if (!text) finish(p, ASK_GONE, "out of memory");
    while (!p->done) {
        if (pthread_cond_timedwait(&table->answered, &table->lock, &deadline) == ETIMEDOUT &&
            !p->done) {
            char message_text[128];
            snprintf(message_text, sizeof message_text, "the client did not answer %s within %g s",
                     method, timeout_seconds);
            finish(p, ASK_TIMEOUT, message_text);
        }
    }
    ask_outcome outcome = p->outcome;
    *result = p->result;
    if (outcome != ASK_OK) snprintf(error, CAP_ERROR_SIZE, "%s", p->message);
    free(p->call_id);
    memset(p, 0, sizeof *p); /* the slot is free again; a late answer finds nothing */
    pthread_mutex_unlock(&table->lock);
    return outcome;
}

int ask_answer(ask_table *table, const cJSON *message) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(message, "id");
    if (!cJSON_IsString(id)) return 0; /* our ids are strings: a number is not ours */
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(message, "result");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(message, "error");
    int matched = 0;
    pthread_mutex_lock(&table->lock);
    for (int i = 0; i < ASK_MAX_PENDING && !matched; i++) {
        pending *p = &table->slots[i];
        if (!p->used || p->done || strcmp(p->id, id->valuestring) != 0) continue;
        matched = 1;
        if (cJSON_IsObject(result) && !error) {
            p->result = cJSON_Duplicate(result, 1);
            finish(p, p->result ? ASK_OK : ASK_GONE, p->result ? "" : "out of memory");
        } else if (cJSON_IsObject(error) && !result) {
            const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(error, "message");
            char message_text[CAP_ERROR_SIZE];
            snprintf(message_text, sizeof message_text, "the client answered with error %d: %.150s",
                     cJSON_IsNumber(code) ? (int)code->valuedouble : 0,
                     cJSON_IsString(text) ? text->valuestring : "(no message)");
            finish(p, ASK_ERROR, message_text);
        } else {
            finish(p, ASK_INVALID, "the client's answer is neither a result object nor an error");
        }
    }
    if (matched) pthread_cond_broadcast(&table->answered);
    pthread_mutex_unlock(&table->lock);
    return matched;
}

void ask_cancel(ask_table *table, const char *call_id) {
    if (!table || !call_id) return;
    pthread_mutex_lock(&table->lock);
    for (int i = 0; i < ASK_MAX_PENDING; i++) {
        pending *p = &table->slots[i];
        if (p->used && !p->done && p->call_id && strcmp(p->call_id, call_id) == 0)
            finish(p, ASK_GONE, "the call was cancelled");
    }
    pthread_cond_broadcast(&table->answered);
    pthread_mutex_unlock(&table->lock);
}

void ask_close(ask_table *table) {
    if (!table) return;
    pthread_mutex_lock(&table->lock);
    table->closed = 1;
    for (int i = 0; i < ASK_MAX_PENDING; i++) {
        pending *p = &table->slots[i];
        if (p->used && !p->done) finish(p, ASK_GONE, "the client is gone");
    }
    pthread_cond_broadcast(&table->answered);
    pthread_mutex_unlock(&table->lock);
}
