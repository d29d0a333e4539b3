/*
 * session.c — workers kept between runs under a caller's session id, so
 * that a later run sees the same interpreter.  At most max_sessions are
 * kept (the least recently used is evicted); an idle one expires.  The ids
 * of evicted sessions are remembered for a while so that a late run gets a
 * clear "no longer exists" instead of a fresh interpreter.
 */
#include "sandbox.h"

#include <stdlib.h>
#include <string.h>

#include "page_file.h"

static void remember_evicted(cap_sandbox *sandbox, const char *id) {
    free(sandbox->evicted[sandbox->evicted_next]);
    sandbox->evicted[sandbox->evicted_next] = strdup(id);
    sandbox->evicted_next = (sandbox->evicted_next + 1) % EVICTED_MEMORY;
}

int sandbox_session_was_evicted(const cap_sandbox *sandbox, const char *id) {
    for (int i = 0; i < EVICTED_MEMORY; i++)
        if (sandbox->evicted[i] && strcmp(sandbox->evicted[i], id) == 0) return 1;
    return 0;
}

void sandbox_session_forget(cap_sandbox *sandbox, int index) {
    session *s = &sandbox->sessions[index];
    sandbox_worker_discard(&s->worker);
    sandbox_durable_pages_free(&s->pages);
    free(s->id);
    sandbox->sessions[index] = sandbox->sessions[--sandbox->session_count];
}

void sandbox_session_remove(cap_sandbox *sandbox, int index, int evicted) {
    session *s = &sandbox->sessions[index];
    sandbox_worker_discard(&s->worker); /* gone before the store says parked */
    /* A durable session is parked, not lost: its next call restores it. */
    if (sandbox->config->store) sandbox_durable_park(sandbox, s->id, !evicted);
    else if (evicted) remember_evicted(sandbox, s->id);
    sandbox_session_forget(sandbox, index);
}

/* Drops the workers of this sandbox's sessions that the node parked on
 * another node's request since the last look (parked in the store already;
 * parking again is a no-op, or parks one that came back here since). */
static void drop_parked(cap_sandbox *sandbox) {
    cap_config *config = sandbox->config;
    if (!config->store) return;
    /* The ids are copied out first: parking below takes store_lock, which
     * the renewer holds while it takes parked_lock (one order only). */
    char ids[PARKED_MEMORY][STORE_ID_SIZE];
    int count = 0;
    pthread_mutex_lock(&config->parked_lock);
    uint64_t total = config->parked_total;
    uint64_t from = sandbox->parked_seen;
    if (total - from > PARKED_MEMORY) from = total - PARKED_MEMORY; /* older ones: see below */
    for (uint64_t n = from; n < total && sandbox->session_count; n++)
        memcpy(ids[count++], config->parked_ids[n % PARKED_MEMORY], STORE_ID_SIZE);
    pthread_mutex_unlock(&config->parked_lock);
    sandbox->parked_seen = total;
    /* Parked in the store too (if still this node's): the session may have
     * come back to this sandbox after the note was written, and the store
     * must not say live here once the worker is gone.  Ids that fell off
     * the ring are caught at their session's next call here:
     * sandbox_durable_begin finds it no longer this node's. */
    for (int k = 0; k < count; k++)
        for (int i = sandbox->session_count - 1; i >= 0; i--)
            if (strcmp(sandbox->sessions[i].id, ids[k]) == 0) sandbox_session_remove(sandbox, i, 1);
}

/* Removes (as evicted: parked when durable) the sessions idle for longer
 * than the configured timeout. */
static void expire_idle(cap_sandbox *sandbox) {
    double now = sandbox_now_seconds();
    for (int i = sandbox->session_count - 1; i >= 0; i--)
        if (now - sandbox->sessions[i].last_used > sandbox->config->session_idle_seconds)
            sandbox_session_remove(sandbox, i, 1);
}

int cap_sandbox_tidy(cap_sandbox *sandbox) {
    if (!sandbox) return 0;
    int before = sandbox->session_count;
    sandbox_reap_exiting(sandbox, 0);
    expire_idle(sandbox);
    drop_parked(sandbox);
    return before - sandbox->session_count;
}

session *sandbox_session_find(cap_sandbox *sandbox, const char *id) {
    for (int i = 0; i < sandbox->session_count; i++)
        if (strcmp(sandbox->sessions[i].id, id) == 0) return &sandbox->sessions[i];
    return NULL;
}

int cap_session_close(cap_sandbox *sandbox, const char *id, char *error) {
    for (int i = 0; sandbox && id && i < sandbox->session_count; i++) {
        if (strcmp(sandbox->sessions[i].id, id) == 0) {
            sandbox_session_remove(sandbox, i, 0);
            return CAP_OK;
        }
    }
    /* A parked durable session is only in the store. */
    if (sandbox && id && sandbox->config->store) {
        pthread_mutex_lock(&sandbox->config->store_lock);
        int rc = store_session_delete(sandbox->config->store, id, NULL);
        pthread_mutex_unlock(&sandbox->config->store_lock);
        page_files_remove(sandbox->config->page_files, id);
        if (rc == CAP_OK) return CAP_OK;
    }
    sandbox_set_error(error, "no session %s", id ? id : "(null)");
    return CAP_EINVAL;
}


/* Keeps `w`, whose run has just ended with a result, as session `id` (with
 * the page hashes of a durable one, which it takes),
 * evicting the least recently used session when max_sessions are kept
 * already.  When no session can be kept (sessions disabled, or out of
 * memory) the worker is discarded: either way the caller no longer holds
 * it. */
void sandbox_session_add(cap_sandbox *sandbox, const char *id, worker w, durable_pages *pages) {
    if (sandbox->session_count < MAX_SESSIONS && sandbox->config->max_sessions > 0) {
        if (sandbox->session_count >= sandbox->config->max_sessions) {
            int oldest = 0; /* least recently used */
            for (int i = 1; i < sandbox->session_count; i++)
                if (sandbox->sessions[i].last_used < sandbox->sessions[oldest].last_used)
                    oldest = i;
            sandbox_session_remove(sandbox, oldest, 1);
        }
        char *copy = strdup(id);
        if (copy) {
            sandbox->sessions[sandbox->session_count++] =
                (session){copy, w, sandbox_now_seconds(), *pages};
            *pages = (durable_pages){0}; /* the session's now */
        } else {
            sandbox_worker_discard(&w);
        }
    } else {
        sandbox_worker_discard(&w);
    }
}
