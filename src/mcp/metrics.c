/*
 * GET /metrics: the server's and the store's counters in Prometheus' text
 * format.
 */
#include "server_internal.h"

#include "../sandbox/buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *mcp_server_metrics(mcp_server *server) {
    buffer out = {0};
    char line[256];
    static const char runs_help[] =
        "# HELP capsule_runs_total Runs of run_python_code, by how they ended.\n"
        "# TYPE capsule_runs_total counter\n";
    int rc = buffer_append(&out, runs_help, sizeof runs_help - 1);
    pthread_mutex_lock(&server->lock);
    int busy = 0;
    for (int i = 0; i < server->slot_count; i++) busy += server->slots[i].busy;
    for (int status = 0; rc == 0 && status <= CAP_STATUS_CANCELLED; status++) {
        int length = snprintf(line, sizeof line, "capsule_runs_total{status=\"%s\"} %llu\n",
                              cap_status_name((cap_status)status),
                              (unsigned long long)server->runs[status]);
        rc = buffer_append(&out, line, (size_t)length);
    }
    int length = snprintf(
        line, sizeof line,
        "# HELP capsule_runs_refused_total Calls refused: every worker busy, the queue full.\n"
        "# TYPE capsule_runs_refused_total counter\ncapsule_runs_refused_total %llu\n",
        (unsigned long long)server->runs_refused);
    if (rc == 0) rc = buffer_append(&out, line, (size_t)length);
    length = snprintf(line, sizeof line,
                      "# HELP capsule_workers Sandboxes running calls, and those busy.\n"
                      "# TYPE capsule_workers gauge\ncapsule_workers %d\n"
                      "capsule_workers_busy %d\n", server->slot_count, busy);
    if (rc == 0) rc = buffer_append(&out, line, (size_t)length);
    length = snprintf(line, sizeof line,
                      "# HELP capsule_calls_waiting Calls queued for a worker.\n"
                      "# TYPE capsule_calls_waiting gauge\ncapsule_calls_waiting %d\n"
                      "# HELP capsule_tasks_running Tasks whose run has not ended.\n"
                      "# TYPE capsule_tasks_running gauge\ncapsule_tasks_running %d\n",
                      server->waiting, server->tasks_running);
    if (rc == 0) rc = buffer_append(&out, line, (size_t)length);
    pthread_mutex_unlock(&server->lock);
    char error[CAP_ERROR_SIZE];
    char *store = cap_config_store_metrics(server->config, error);
    if (rc == 0 && store) rc = buffer_append(&out, store, strlen(store));
    else if (rc == 0) { /* the store failed: the server's numbers still, and why */
        length = snprintf(line, sizeof line, "# the store failed: %.200s\n", error);
        rc = buffer_append(&out, line, (size_t)length);
    }
    free(store);
    if (rc != 0 || buffer_append(&out, "", 1) != 0) {
        buffer_free(&out);
        return NULL;
    }
    return out.data;
}
