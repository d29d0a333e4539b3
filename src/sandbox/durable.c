/*
 * durable.c — the host's side of durable sessions: a session's worker saved
 * into the store after each call, and put back into a fresh worker when
 * the session is not live (docs/sessions.md, durable.h).
 *
 * A snapshot is the store's list of pages: the linear memory's 64 KiB pages
 * at their page numbers, then the scratch file system's stream cut into
 * pages from FILES_PAGE on, with a manifest (JSON) saying what the pages
 * are.  Pages that a worker did not send are the base's (the memory the
 * zygote had after capsule_init): the host names them by the hashes the
 * zygote gave, so only what a session changed is sent, hashed and
 * compressed, and identical pages are stored once (content addressing).
 *
 * The worker is untrusted: every count, index and size it sends is checked
 * against its own header and the limits, and it can name by hash only base
 * pages, whose hashes the host holds; anything else is sent in full and
 * hashed here.  A snapshot is restored only into the build of the guest
 * that took it (the manifest names it; another build is a session-error).
 *
 * Store calls hold config->store_lock: a store handle is one thread's at a
 * time, and a config's sandboxes run on several threads.
 */
#include "sandbox.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/runtime.h"
#include "durable.h"
#include "frame.h"
#include "page_file.h"

#define MANIFEST_FORMAT 1
#define FILES_PAGE DURABLE_MAX_PAGES /* first page number of the file system's stream */
#define WORKER_SECONDS 60.0          /* a worker that takes longer to save or load is dead */

int sandbox_durable_base(cap_sandbox *sandbox, const char *payload, size_t size, char *error) {
    uint32_t head[2];
    if (size < sizeof head) {
        sandbox_set_error(error, "the zygote sent no base for durable sessions");
        return CAP_ERUNTIME;
    }
    memcpy(head, payload, sizeof head);
    if (head[0] == 0 || head[0] > DURABLE_MAX_PAGES ||
        size != sizeof head + (size_t)head[0] * DURABLE_HASH) {
        sandbox_set_error(error, "the zygote sent a malformed base");
        return CAP_ERUNTIME;
    }
    sandbox->base_hashes = malloc((size_t)head[0] * DURABLE_HASH);
    if (!sandbox->base_hashes) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    memcpy(sandbox->base_hashes, payload + sizeof head, (size_t)head[0] * DURABLE_HASH);
    sandbox->base_pages = head[0];
    sandbox->base_stack_pointer = head[1];
    return CAP_OK;
}

int sandbox_durable_fresh(const cap_sandbox *sandbox, durable_pages *known) {
    known->hashes = malloc((size_t)sandbox->base_pages * DURABLE_HASH);
    known->count = known->hashes ? sandbox->base_pages : 0;
    if (!known->hashes) return CAP_ENOMEM;
    memcpy(known->hashes, sandbox->base_hashes, (size_t)sandbox->base_pages * DURABLE_HASH);
    known->from_base = 1;
    return CAP_OK;
}

void sandbox_durable_pages_free(durable_pages *pages) {
    free(pages->hashes);
    page_file_close(pages->page_file);
    *pages = (durable_pages){0};
}

/* frame_read with a deadline: 0, or -ETIMEDOUT / -errno. */
static int read_within(int fd, double deadline, char *type, char **payload, size_t *size,
                       size_t max_size) {
    int ready = sandbox_wait_readable(fd, deadline, -1);
    if (ready != WAIT_READABLE) return ready < 0 ? ready : -ETIMEDOUT;
    return frame_read(fd, type, payload, size, max_size, NULL);
}

static double number(const cJSON *object, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsNumber(item) ? item->valuedouble : -1;
}

/* What a worker sent for one snapshot, checked. */
typedef struct taken {
    uint32_t pages;
    uint32_t stack_pointer;
    double monotonic_us; /* the guest's monotonic clock when taken (0: not given) */
    uint8_t *sent;       /* the pages sent, DURABLE_PAGE each, in index order */
    uint32_t *sent_index;
    uint8_t *sent_hash;  /* their SHA-256, computed here */
    uint32_t sent_count;
    buffer files;        /* the scratch file system's stream */
    char environments[16][65]; /* package images the worker mounted, in order */
    int environment_count;
} taken;

static void taken_free(taken *t) {
    free(t->sent);
    free(t->sent_index);
    free(t->sent_hash);
    buffer_free(&t->files);
}

/* A list of at most 16 package-image keys (64 lowercase hex digits each):
 * 0, or -1 when it is anything else.  A missing list is empty. */
static int environment_keys(const cJSON *list, char keys[16][65], int *count) {
    *count = 0;
    if (!list) return 0;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) > 16) return -1;
    const cJSON *key;
    cJSON_ArrayForEach(key, list) {
        if (!cJSON_IsString(key) || strlen(key->valuestring) != 64 ||
            strspn(key->valuestring, "0123456789abcdef") != 64)
            return -1;
        memcpy(keys[(*count)++], key->valuestring, 65);
    }
    return 0;
}

/* Asks the worker for its state and reads it all, checking each frame. */
static int take_from_worker(cap_sandbox *sandbox, int fd, const durable_pages *known, int full,
                            taken *t, char *error) {
    memset(t, 0, sizeof *t);
    double deadline = sandbox_now_seconds() + WORKER_SECONDS;
    if (frame_write(fd, 'K', full ? "full" : "", full ? 4 : 0) != 0) {
        sandbox_set_error(error, "the session's worker is gone");
        return CAP_ERUNTIME;
    }
    char type;
    char *payload = NULL;
    size_t size;
    int rc = read_within(fd, deadline, &type, &payload, &size, 4096);
    cJSON *header = rc == 0 && type == 'K' ? cJSON_ParseWithLength(payload, size) : NULL;
    if (environment_keys(cJSON_GetObjectItemCaseSensitive(header, "environments"),
                         t->environments, &t->environment_count) != 0) {
        cJSON_Delete(header);
        header = NULL; /* refused below as malformed */
    }
    free(payload);
    double pages = number(header, "pages"), stack_pointer = number(header, "stack_pointer");
    double changed = number(header, "changed"), files = number(header, "vfs_bytes");
    /* Only ever the guest's own clock: any value the worker sends within
     * range is taken (it only sets where that session's clock continues). */
    double monotonic = number(header, "monotonic_us");
    t->monotonic_us =
        monotonic > 0 && monotonic < DURABLE_MONOTONIC_MAX_US ? (double)(uint64_t)monotonic : 0;
    cJSON_Delete(header);
    if (!(pages >= known->count && pages <= DURABLE_MAX_PAGES && changed >= 0 &&
          changed <= pages && files >= 0 && files <= (double)DURABLE_MAX_VFS &&
          stack_pointer == (double)sandbox->base_stack_pointer && pages == (uint32_t)pages &&
          (uint32_t)pages % DURABLE_PER_WASM_PAGE == 0 &&
          changed == (uint32_t)changed && files == (uint64_t)files)) {
        sandbox_set_error(error, "the worker sent a malformed snapshot header");
        return CAP_ERUNTIME;
    }
    t->pages = (uint32_t)pages;
    t->stack_pointer = (uint32_t)stack_pointer;
    t->sent_count = (uint32_t)changed;
    /* Every page beyond those known must be sent (the host has no hash for
     * it), and with `full` every page but the dead stack's. */
    uint32_t dead = sandbox->base_stack_pointer / DURABLE_PAGE;
    if (t->sent_count < t->pages - known->count || (full && t->sent_count != t->pages - dead)) {
        sandbox_set_error(error, "the worker's snapshot misses pages");
        return CAP_ERUNTIME;
    }
    t->sent = malloc(t->sent_count ? (size_t)t->sent_count * DURABLE_PAGE : 1);
    t->sent_index = malloc(t->sent_count ? t->sent_count * sizeof *t->sent_index : 1);
    t->sent_hash = malloc(t->sent_count ? (size_t)t->sent_count * DURABLE_HASH : 1);
    if (!t->sent || !t->sent_index || !t->sent_hash) {
        sandbox_set_error(error, "out of memory for the session's snapshot");
        return CAP_ENOMEM;
    }
    for (uint32_t i = 0; i < t->sent_count; i++) {
        rc = read_within(fd, deadline, &type, &payload, &size, 4 + DURABLE_PAGE);
        uint32_t index = 0;
        if (rc == 0 && size == 4 + DURABLE_PAGE)
            for (int b = 0; b < 4; b++) index |= (uint32_t)(uint8_t)payload[b] << (8 * b);
        int good = rc == 0 && type == 'k' && size == 4 + DURABLE_PAGE && index < t->pages &&
                   index >= dead && (i == 0 || index > t->sent_index[i - 1]);
        if (good) memcpy(t->sent + (size_t)i * DURABLE_PAGE, payload + 4, DURABLE_PAGE);
        if (rc == 0) free(payload);
        if (!good) {
            sandbox_set_error(error, "the worker sent a malformed snapshot page");
            return CAP_ERUNTIME;
        }
        t->sent_index[i] = index;
        store_hash(t->sent + (size_t)i * DURABLE_PAGE, DURABLE_PAGE,
                   t->sent_hash + (size_t)i * DURABLE_HASH);
    }
    /* Pages at and past the known ones' end must all have been among them. */
    uint32_t beyond = 0;
    for (uint32_t i = 0; i < t->sent_count; i++) beyond += t->sent_index[i] >= known->count;
    if (beyond != t->pages - known->count) {
        sandbox_set_error(error, "the worker's snapshot misses pages");
        return CAP_ERUNTIME;
    }
    while (t->files.size < (size_t)files) {
        rc = read_within(fd, deadline, &type, &payload, &size, DURABLE_VFS_CHUNK);
        int good = rc == 0 && type == 'v' && size > 0 && t->files.size + size <= (size_t)files;
        if (good && buffer_append(&t->files, payload, size) != 0) good = 0;
        if (rc == 0) free(payload);
        if (!good) {
            sandbox_set_error(error, "the worker sent malformed snapshot files");
            return CAP_ERUNTIME;
        }
    }
    return CAP_OK;
}

/* The store's view of `t`: every memory page (sent ones by their bytes,
 * the others by the base's hash), then the files' pages.  `pages` and
 * `tail` (the last, zero-padded files page) are the caller's to free. */
static int describe(const cap_sandbox *sandbox, const durable_pages *known, const taken *t,
                    store_page **pages, size_t *count, uint8_t **tail) {
    static const uint8_t zero_page[DURABLE_PAGE];
    static uint8_t zero_hash[DURABLE_HASH];
    static int zero_hashed;
    if (!zero_hashed) { /* the same value from any thread: a benign race */
        store_hash(zero_page, DURABLE_PAGE, zero_hash);
        zero_hashed = 1;
    }
    uint32_t dead = sandbox->base_stack_pointer / DURABLE_PAGE;
    size_t file_pages = (t->files.size + DURABLE_PAGE - 1) / DURABLE_PAGE;
    *count = t->pages + file_pages;
    *pages = calloc(*count ? *count : 1, sizeof **pages);
    *tail = calloc(1, DURABLE_PAGE);
    if (!*pages || !*tail) return CAP_ENOMEM;
    uint32_t next = 0;
    for (uint32_t page = 0; page < t->pages; page++) {
        store_page *p = &(*pages)[page];
        p->index = page;
        if (page < dead) { /* the dead stack: stored as a zero page */
            p->data = zero_page;
            p->hash = zero_hash;
        } else if (next < t->sent_count && t->sent_index[next] == page) {
            p->data = t->sent + (size_t)next * DURABLE_PAGE;
            p->hash = t->sent_hash + (size_t)next++ * DURABLE_HASH; /* hashed here already */
        } else {
            p->hash = known->hashes + (size_t)page * DURABLE_HASH;
        }
    }
    for (size_t i = 0; i < file_pages; i++) {
        store_page *p = &(*pages)[t->pages + i];
        p->index = FILES_PAGE + (uint32_t)i;
        size_t offset = i * DURABLE_PAGE, left = t->files.size - offset;
        if (left >= DURABLE_PAGE) {
            p->data = t->files.data + offset;
        } else {
            memcpy(*tail, t->files.data + offset, left);
            p->data = *tail;
        }
    }
    return CAP_OK;
}

static char *manifest_text(const taken *t) {
    cJSON *manifest = cJSON_CreateObject();
    cJSON_AddNumberToObject(manifest, "format", MANIFEST_FORMAT);
    cJSON_AddStringToObject(manifest, "build", runtime_build_id());
    cJSON_AddNumberToObject(manifest, "pages", t->pages);
    cJSON_AddNumberToObject(manifest, "stack_pointer", t->stack_pointer);
    cJSON_AddNumberToObject(manifest, "monotonic_us", t->monotonic_us);
    cJSON_AddNumberToObject(manifest, "vfs_bytes", (double)t->files.size);
    cJSON *environments = cJSON_AddArrayToObject(manifest, "environments");
    for (int i = 0; i < t->environment_count; i++)
        cJSON_AddItemToArray(environments, cJSON_CreateString(t->environments[i]));
    char *text = cJSON_PrintUnformatted(manifest);
    cJSON_Delete(manifest);
    return text;
}

/* After a commit: `known` becomes the snapshot's memory page hashes. */
static int remember(durable_pages *known, const taken *t) {
    uint8_t *hashes = malloc((size_t)t->pages * DURABLE_HASH);
    if (!hashes) return CAP_ENOMEM;
    uint32_t next = 0;
    for (uint32_t page = 0; page < t->pages; page++) {
        const uint8_t *hash = next < t->sent_count && t->sent_index[next] == page
                                  ? t->sent_hash + (size_t)next++ * DURABLE_HASH
                                  : known->hashes + (size_t)page * DURABLE_HASH;
        memcpy(hashes + (size_t)page * DURABLE_HASH, hash, DURABLE_HASH);
    }
    free(known->hashes);
    known->hashes = hashes;
    known->count = t->pages;
    known->stored = 1;
    return CAP_OK;
}

/* After a commit that `remember` took into `known`: the node's page file
 * gets the pages sent, and is sealed for the new hashes.  It is written
 * only when it held the snapshot before (or the worker was fresh, when the
 * pages sent are all that differ from the base); otherwise, or when a write
 * fails, the session has none until its next restore here. */
static void keep_page_file(const cap_sandbox *sandbox, durable_pages *known, const taken *t,
                           const char *session) {
    page_files *files = sandbox->config->page_files;
    page_file *file = known->page_file;
    known->page_file = NULL;
    if (!file && known->from_base && files) file = page_file_create(files, session);
    known->from_base = 0;
    if (!file) return;
    int written = page_file_unseal(file) == 0;
    for (uint32_t i = 0, run; written && i < t->sent_count; i += run) {
        for (run = 1; i + run < t->sent_count && t->sent_index[i + run] == t->sent_index[i] + run;)
            run++;
        written = page_file_write(file, t->sent_index[i], t->sent + (size_t)i * DURABLE_PAGE,
                                  run) == 0;
    }
    uint8_t key[PAGE_FILE_KEY];
    if (written)
        page_files_key(files, known->hashes, known->count,
                       sandbox->base_stack_pointer / DURABLE_PAGE, key);
    if (written && page_file_seal(files, file, key) == 0)
        known->page_file = file;
    else
        page_file_drop(file);
}

/* A session this node dropped without parking it in the store (the store
 * failed): its next call here takes it back (sandbox_durable_begin). */
static void remember_orphan(cap_config *config, const char *session) {
    pthread_mutex_lock(&config->parked_lock);
    snprintf(config->orphan_ids[config->orphan_total % PARKED_MEMORY], STORE_ID_SIZE, "%s",
             session);
    config->orphan_total++;
    pthread_mutex_unlock(&config->parked_lock);
}

/* Whether `session` was noted by remember_orphan (and forgets it). */
static int take_orphan(cap_config *config, const char *session) {
    int found = 0;
    pthread_mutex_lock(&config->parked_lock);
    uint64_t from = config->orphan_total > PARKED_MEMORY ? config->orphan_total - PARKED_MEMORY : 0;
    for (uint64_t n = from; n < config->orphan_total; n++) {
        char *id = config->orphan_ids[n % PARKED_MEMORY];
        if (strcmp(id, session) == 0) {
            id[0] = '\0';
            found = 1;
        }
    }
    pthread_mutex_unlock(&config->parked_lock);
    return found;
}

/* Drops what this node keeps of an expired session (store_expire's and
 * store_take_expired's each): its page file. */
static void forget_page_file(void *context, const char *id) {
    page_files_remove(context, id);
}

int sandbox_durable_commit(cap_sandbox *sandbox, int worker_fd, durable_pages *known,
                           const char *session, int64_t seq, const char *status,
                           const char *result_json, char *error) {
    cap_config *config = sandbox->config;
    if (worker_fd < 0) { /* the worker is gone: the result alone, the state as before */
        pthread_mutex_lock(&config->store_lock);
        int rc = store_call_finish(config->store, session, seq, status, result_json, NULL, NULL,
                                   error);
        if (rc == CAP_OK) rc = store_session_set_status(config->store, session,
                                                        STORE_SESSION_PARKED, error);
        if (rc != CAP_OK) remember_orphan(config, session);
        pthread_mutex_unlock(&config->store_lock);
        return rc;
    }
    /* Pages the worker does not send are named by the hashes in `known`.
     * After a restore or a commit those are a stored snapshot's; for a
     * fresh worker they are the base's, which the first snapshot of a
     * sandbox stores by sending every page.  Should the store have lost
     * them (expiry, collection), the commit is tried once more in full. */
    int rc = CAP_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        int full = (!known->stored && !sandbox->base_stored) || attempt > 0;
        taken t;
        rc = take_from_worker(sandbox, worker_fd, known, full, &t, error);
        store_page *pages = NULL;
        size_t count = 0;
        uint8_t *tail = NULL;
        char *manifest = rc == CAP_OK ? manifest_text(&t) : NULL;
        if (rc == CAP_OK &&
            (!manifest || describe(sandbox, known, &t, &pages, &count, &tail) != CAP_OK)) {
            sandbox_set_error(error, "out of memory for the session's snapshot");
            rc = CAP_ENOMEM;
        }
        if (rc == CAP_OK) {
            store_snapshot_data snapshot = {runtime_build_id(), manifest, DURABLE_PAGE, pages,
                                            count};
            pthread_mutex_lock(&config->store_lock);
            rc = store_call_finish(config->store, session, seq, status, result_json, &snapshot,
                                   NULL, error);
            /* Sessions it expired to stay under the quota leave the disk. */
            store_take_expired(config->store, forget_page_file, config->page_files);
            pthread_mutex_unlock(&config->store_lock);
        }
        free(pages);
        free(tail);
        free(manifest);
        if (rc == CAP_OK) {
            sandbox->base_stored = 1;
            if (remember(known, &t) != CAP_OK) {
                /* The commit stands; without the hashes the worker cannot
                 * be described next time, so the caller drops it. */
                sandbox_durable_pages_free(known);
            } else {
                keep_page_file(sandbox, known, &t, session);
            }
        }
        taken_free(&t);
        if (rc != STORE_ENOTFOUND || full) break;
    }
    return rc;
}

/* --- restore ----------------------------------------------------------------- */

typedef struct restoring {
    const cap_sandbox *sandbox;
    const store_snapshot *snapshot;
    uint32_t pages;
    buffer files;
    uint64_t vfs_bytes;
    int mapped;      /* the memory is in a sealed page file already: only files' pages are read */
    page_file *file; /* the page file the worker maps: the node's, or one in memory */
    uint8_t key[PAGE_FILE_KEY]; /* the snapshot's, with the node's page files */
} restoring;

/* Whether the fresh worker has this page already: a base page of this
 * sandbox with the same content. */
static int worker_has(const cap_sandbox *sandbox, uint32_t index, const uint8_t *hash) {
    if (index < sandbox->base_stack_pointer / DURABLE_PAGE) return 1; /* dead stack: anything */
    return index < sandbox->base_pages &&
           memcmp(sandbox->base_hashes + (size_t)index * DURABLE_HASH, hash, DURABLE_HASH) == 0;
}

/* Pages the fresh worker has already (the base's, the dead stack) are not
 * even read from the store, nor those a sealed page file holds. */
static int worker_lacks(void *context, uint32_t index, const uint8_t *hash) {
    const restoring *r = context;
    return index >= FILES_PAGE || (!r->mapped && !worker_has(r->sandbox, index, hash));
}

/* Pages read from the store, `size / DURABLE_PAGE` consecutive ones from
 * `index` on: the files' stream is gathered, memory pages go to their
 * place in the page file (whose disk, should it refuse, is left for
 * memory). */
static int take_page(void *context, uint32_t index, const void *bytes, size_t size) {
    restoring *r = context;
    if (!size || size % DURABLE_PAGE) return STORE_ECORRUPT;
    uint32_t count = (uint32_t)(size / DURABLE_PAGE);
    if (index >= FILES_PAGE) {
        for (uint32_t i = 0; i < count; i++) {
            size_t offset = (size_t)(index + i - FILES_PAGE) * DURABLE_PAGE;
            if (offset != r->files.size || offset >= r->vfs_bytes) return STORE_ECORRUPT;
            size_t n = r->vfs_bytes - offset < DURABLE_PAGE ? r->vfs_bytes - offset : DURABLE_PAGE;
            if (buffer_append(&r->files, (const uint8_t *)bytes + (size_t)i * DURABLE_PAGE, n))
                return CAP_ENOMEM;
        }
        return 0;
    }
    /* Memory pages come in index order at their own position, checked
     * against the manifest before the walk; the store verified the bytes
     * against these very hashes. */
    if (count > r->pages || index > r->pages - count || r->mapped) return STORE_ECORRUPT;
    for (uint32_t i = 0; i < count; i++)
        if (r->snapshot->pages[index + i].index != index + i) return STORE_ECORRUPT;
    if (page_file_write(r->file, index, bytes, count) == 0) return 0;
    if (page_file_to_memory(r->file) == 0 && page_file_write(r->file, index, bytes, count) == 0)
        return 0;
    return CAP_EIO;
}

/* The runs of pages the fresh worker lacks, for it to map from the page
 * file (u32 first, u32 count each; malloc'd into *runs); `end` gets one
 * past the last page mapped.  CAP_OK or CAP_ENOMEM. */
static int lacking_runs(const cap_sandbox *sandbox, const uint8_t *hashes, uint32_t pages,
                        uint8_t **runs, uint32_t *run_count, uint32_t *end) {
    *run_count = *end = 0;
    *runs = malloc(((size_t)pages / 2 + 1) * 8);
    if (!*runs) return CAP_ENOMEM;
    for (uint32_t page = 0; page < pages;) {
        if (worker_has(sandbox, page, hashes + (size_t)page * DURABLE_HASH)) {
            page++;
            continue;
        }
        uint32_t first = page;
        while (page < pages && !worker_has(sandbox, page, hashes + (size_t)page * DURABLE_HASH))
            page++;
        uint8_t *at = *runs + (size_t)*run_count * 8;
        for (int b = 0; b < 4; b++) {
            at[b] = (uint8_t)(first >> (8 * b));
            at[4 + b] = (uint8_t)((page - first) >> (8 * b));
        }
        ++*run_count;
        *end = page;
    }
    return CAP_OK;
}

/* The page file for the restore `r` of `session`, whose snapshot has these
 * page hashes (page_file.h): the node's file when it is sealed for exactly
 * them (r->mapped: nothing to read but the files' pages), else a new one to
 * fill from the store, the node's to keep, or one in memory when the node
 * keeps none.  CAP_OK, or CAP_ENOMEM. */
static int open_page_file(const cap_sandbox *sandbox, const char *session, const uint8_t *hashes,
                          restoring *r, char *error) {
    page_files *files = sandbox->config->page_files;
    if (files) {
        page_files_key(files, hashes, r->pages, sandbox->base_stack_pointer / DURABLE_PAGE,
                       r->key);
        r->file = page_file_open_sealed(files, session, r->key);
        r->mapped = r->file != NULL;
        if (!r->file) r->file = page_file_create(files, session);
    }
    if (!r->file) r->file = page_file_anonymous();
    if (!r->file) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    return CAP_OK;
}

/* Restores a session whose memory is the page file of `r` into the worker:
 * the 'L' header, the package images, the runs to map with a read-only
 * descriptor of the file, the scratch files; then its answer. */
static int send_restore(cap_sandbox *sandbox, int worker_fd, restoring *r, const uint8_t *hashes,
                        uint32_t stack_pointer, double monotonic,
                        char environments[16][65], int environment_count, char *error) {
    uint8_t *runs = NULL;
    uint32_t run_count = 0, end = 0;
    int rc = lacking_runs(sandbox, hashes, r->pages, &runs, &run_count, &end);
    if (rc != CAP_OK) {
        sandbox_set_error(error, "out of memory");
        return rc;
    }
    /* A page past the file's end would be a fault (SIGBUS) in the worker
     * at first touch. */
    struct stat st;
    int reader = run_count ? page_file_reader(r->file) : -1;
    if (run_count && (reader < 0 || fstat(r->file->fd, &st) != 0 ||
                      (uint64_t)st.st_size < PAGE_FILE_HEADER + (uint64_t)end * DURABLE_PAGE)) {
        sandbox_set_error(error, "the session's page file is unusable");
        rc = CAP_EIO;
    }
    char header[256];
    int length = snprintf(header, sizeof header,
                          "{\"pages\":%u,\"stack_pointer\":%u,\"mapped\":%u,"
                          "\"monotonic_us\":%.0f,\"vfs_bytes\":%llu,\"environments\":%d}",
                          r->pages, stack_pointer, run_count,
                          monotonic > 0 && monotonic < DURABLE_MONOTONIC_MAX_US ? monotonic : 0.0,
                          (unsigned long long)r->vfs_bytes, environment_count);
    if (rc == CAP_OK && frame_write(worker_fd, 'L', header, (size_t)length) != 0) rc = CAP_ERUNTIME;
    /* The package images the session had mounted, from the package cache:
     * one it no longer has is sent without its image (the worker then
     * mounts none from there on). */
    for (int i = 0; rc == CAP_OK && i < environment_count; i++) {
        int image = deps_open_environment(sandbox->config->dependencies, environments[i]);
        int sent = image >= 0 ? frame_write_fd(worker_fd, 'e', environments[i], 64, image)
                              : frame_write(worker_fd, 'e', environments[i], 64);
        if (image >= 0) close(image);
        if (sent != 0) rc = CAP_ERUNTIME;
    }
    if (rc == CAP_OK && run_count &&
        frame_write_fd(worker_fd, 'm', runs, (size_t)run_count * 8, reader) != 0)
        rc = CAP_ERUNTIME;
    if (reader >= 0) close(reader);
    free(runs);
    for (size_t offset = 0; rc == CAP_OK && offset < r->files.size; offset += DURABLE_VFS_CHUNK) {
        size_t n = r->files.size - offset < DURABLE_VFS_CHUNK ? r->files.size - offset
                                                              : DURABLE_VFS_CHUNK;
        if (frame_write(worker_fd, 'v', r->files.data + offset, n) != 0) rc = CAP_ERUNTIME;
    }
    if (rc == CAP_ERUNTIME) sandbox_set_error(error, "the worker for the session's restore is gone");
    if (rc == CAP_OK) {
        char type;
        char *payload = NULL;
        size_t size = 0;
        int read = read_within(worker_fd, sandbox_now_seconds() + WORKER_SECONDS, &type, &payload,
                               &size, 512);
        if (read != 0 || type != 'L' || size != 0) {
            sandbox_set_error(error, "the session could not be restored: %.200s",
                              read == 0 && type == 'L' ? payload : "the worker failed");
            rc = CAP_ERUNTIME;
        }
        if (read == 0) free(payload);
    }
    return rc;
}

int sandbox_durable_restore(cap_sandbox *sandbox, int worker_fd, durable_pages *known,
                            const char *session, char *error) {
    cap_config *config = sandbox->config;
    store_snapshot snapshot = {0};
    double started = sandbox_now_seconds();
    pthread_mutex_lock(&config->store_lock);
    int rc = store_snapshot_latest(config->store, session, &snapshot, error);
    if (rc == STORE_ENOTFOUND) { /* created, but no call committed yet: a fresh interpreter */
        pthread_mutex_unlock(&config->store_lock);
        return CAP_OK;
    }
    cJSON *manifest = rc == CAP_OK ? cJSON_Parse(snapshot.manifest) : NULL;
    const cJSON *build = cJSON_GetObjectItemCaseSensitive(manifest, "build");
    double format = number(manifest, "format"), pages = number(manifest, "pages");
    double stack_pointer = number(manifest, "stack_pointer"), files = number(manifest, "vfs_bytes");
    double monotonic = number(manifest, "monotonic_us");
    size_t file_pages = files >= 0 ? (size_t)((files + DURABLE_PAGE - 1) / DURABLE_PAGE) : 0;
    char environments[16][65];
    int environment_count = 0;
    int environments_bad = environment_keys(
        cJSON_GetObjectItemCaseSensitive(manifest, "environments"), environments,
        &environment_count);
    if (rc != CAP_OK) {
        /* the store's message */
    } else if (!cJSON_IsObject(manifest) || format != MANIFEST_FORMAT || !cJSON_IsString(build) ||
               environments_bad) {
        sandbox_set_error(error, "the session's snapshot has an unreadable manifest");
        rc = STORE_ECORRUPT;
    } else if (strcmp(build->valuestring, runtime_build_id()) != 0 ||
               strcmp(snapshot.build_id, runtime_build_id()) != 0) {
        sandbox_set_error(error, "the session was saved by another build of capsule's guest "
                                 "(%.16s, this is %.16s) and cannot be restored",
                          build->valuestring, runtime_build_id());
        rc = STORE_EVERSION;
    } else if (!(pages >= sandbox->base_pages && pages <= DURABLE_MAX_PAGES &&
                 (uint32_t)pages % DURABLE_PER_WASM_PAGE == 0 &&
                 files >= 0 && files <= (double)DURABLE_MAX_VFS && stack_pointer >= 0 &&
                 stack_pointer < 4294967296.0 && snapshot.page_size == DURABLE_PAGE &&
                 snapshot.page_count == (size_t)pages + file_pages)) {
        sandbox_set_error(error, "the session's snapshot does not match its manifest");
        rc = STORE_ECORRUPT;
    } else {
        /* The page list must be exactly 0..pages-1, then the files' pages. */
        for (size_t i = 0; i < snapshot.page_count && rc == CAP_OK; i++) {
            uint32_t want = i < (size_t)pages ? (uint32_t)i : FILES_PAGE + (uint32_t)(i - (size_t)pages);
            if (snapshot.pages[i].index != want) {
                sandbox_set_error(error, "the session's snapshot does not match its manifest");
                rc = STORE_ECORRUPT;
            }
        }
    }
    cJSON_Delete(manifest);
    restoring *r = rc == CAP_OK ? calloc(1, sizeof *r) : NULL;
    /* The snapshot's page hashes, which the host knows the worker by once
     * restored, and which key the node's page file. */
    uint8_t *hashes = rc == CAP_OK ? malloc((size_t)pages * DURABLE_HASH) : NULL;
    if (rc == CAP_OK && (!r || !hashes)) {
        sandbox_set_error(error, "out of memory");
        rc = CAP_ENOMEM;
    }
    if (rc == CAP_OK) {
        r->sandbox = sandbox;
        r->snapshot = &snapshot;
        r->pages = (uint32_t)pages;
        r->vfs_bytes = (uint64_t)files;
        for (size_t i = 0; i < (size_t)pages; i++)
            memcpy(hashes + i * DURABLE_HASH, snapshot.pages[i].hash, DURABLE_HASH);
        rc = open_page_file(sandbox, session, hashes, r, error);
    }
    /* The pages the page file lacks, decompressed into it. */
    if (rc == CAP_OK)
        rc = store_snapshot_read_wanted_pages(config->store, snapshot.id, worker_lacks, take_page,
                                              r, error);
    if (rc == STORE_ECORRUPT && !strstr(error, "snapshot"))
        sandbox_set_error(error, "the session's snapshot is damaged in the store "
                                 "(a page fails its hash)");
    else if (rc == CAP_EIO && r && !r->mapped)
        sandbox_set_error(error, "no room to restore the session's memory");
    if (rc == CAP_OK && r->files.size != r->vfs_bytes) {
        sandbox_set_error(error, "the session's snapshot misses file pages");
        rc = STORE_ECORRUPT;
    }
    pthread_mutex_unlock(&config->store_lock);
    if (rc == CAP_OK)
        rc = send_restore(sandbox, worker_fd, r, hashes, (uint32_t)stack_pointer, monotonic,
                          environments, environment_count, error);
    if (rc == CAP_OK) { /* the worker now holds the snapshot's pages */
        free(known->hashes);
        known->hashes = hashes;
        hashes = NULL;
        known->count = (uint32_t)pages;
        known->stored = 1;
        known->from_base = 0;
        page_file_close(known->page_file);
        known->page_file = NULL;
        if (r->file->path[0]) { /* the node's: kept up to date from now on */
            if (r->mapped || page_file_seal(config->page_files, r->file, r->key) == 0) {
                known->page_file = r->file;
                r->file = NULL;
            }
        }
        __atomic_add_fetch(&config->restores[r->mapped], 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&config->restore_microseconds[r->mapped],
                           (uint64_t)((sandbox_now_seconds() - started) * 1e6), __ATOMIC_RELAXED);
    }
    free(hashes);
    if (r) {
        page_file_close(r->file); /* a new one not sealed is removed */
        buffer_free(&r->files);
    }
    free(r);
    store_snapshot_clear(&snapshot);
    return rc;
}

/* --- a durable session's call ------------------------------------------------- */

/* A result for a call that does not run; `stopped` records that it was
 * wanted even if memory for it ran out. */
static cap_result *early_result(int *stopped, cap_status status, const char *message) {
    *stopped = 1;
    return sandbox_result_new(status, message);
}

/* What makes two calls "the same request" for an idempotency key. */
static void request_hash(const char *code, size_t code_size, const cap_run_options *options,
                         uint8_t hash[STORE_HASH_SIZE]) {
    buffer text = {0};
    int rc = buffer_append(&text, code ? code : "", code_size);
    rc |= buffer_append(&text, "", 1);
    if (options->globals_json)
        rc |= buffer_append(&text, options->globals_json, strlen(options->globals_json) + 1);
    for (size_t i = 0; i < options->file_count; i++) {
        rc |= buffer_append(&text, options->files[i].path, strlen(options->files[i].path) + 1);
        rc |= buffer_append(&text, options->files[i].data, options->files[i].size);
    }
    if (rc == 0) store_hash(text.data, text.size, hash);
    else memset(hash, 0, STORE_HASH_SIZE);
    buffer_free(&text);
}

/* How long a call waits for the node holding its session to park it: the
 * lease's length (at least a second).  The owner looks at the request at
 * least every third of the lease even when the NOTIFY is lost, and were it
 * dead its lease would have run out by then: so an idle session always
 * comes within the wait, and only one busy in a call this long is refused. */
static double park_wait_seconds(cap_config *config) {
    pthread_mutex_lock(&config->renew_lock);
    double seconds = (double)config->lease_ms / 1000.0;
    pthread_mutex_unlock(&config->renew_lock);
    return seconds < 1 ? 1 : seconds;
}

/* Claims session `id` for this node; when another live node holds it, asks
 * that node to park it and claims again until it has or the wait ends
 * (STORE_EBUSY then, `owner` naming the node).  Takes store_lock for each
 * step, never across the waits. */
static int claim_or_ask(cap_config *config, const char *id, char owner[STORE_ID_SIZE],
                        char *error) {
    double deadline = sandbox_now_seconds() + park_wait_seconds(config);
    int asked = 0;
    owner[0] = '\0';
    for (;;) {
        pthread_mutex_lock(&config->store_lock);
        int rc = store_session_claim(config->store, id, NULL, error);
        if (rc == STORE_EBUSY && !asked) {
            /* Asked once: the row keeps the request until the owner parks
             * the session or someone claims it. */
            char asked_owner[STORE_ID_SIZE];
            if (store_session_request_park(config->store, id, asked_owner, NULL) == CAP_OK &&
                asked_owner[0]) {
                asked = 1;
                snprintf(owner, STORE_ID_SIZE, "%s", asked_owner);
            }
        }
        pthread_mutex_unlock(&config->store_lock);
        if (rc != STORE_EBUSY || sandbox_now_seconds() >= deadline) return rc;
        struct timespec pause = {0, 20 * 1000000}; /* 20 ms: a park is one transaction away */
        nanosleep(&pause, NULL);
    }
}

int sandbox_durable_begin(cap_sandbox *sandbox, const char *code, size_t code_size,
                          const cap_run_options *options, int *live_here_io, int64_t *seq,
                          cap_result **early, char *error) {
    int live_here = *live_here_io;
    cap_config *config = sandbox->config;
    const char *id = options->session;
    *early = NULL;
    *seq = 0;
    int stopped = 0;
    char message[CAP_ERROR_SIZE + 256];
    uint8_t hash[STORE_HASH_SIZE];
    request_hash(code, code_size, options, hash);
    sandbox_start_lease_renewal(config);
    pthread_mutex_lock(&config->store_lock);
    store_session stored;
    int rc = store_session_get(config->store, id, &stored, error);
    int created = 0;
    if (rc == STORE_ENOTFOUND) { /* new: live on this node from the start */
        rc = store_session_create(config->store, id, "", config->session_ttl_ms, error);
        if (rc == CAP_OK) rc = store_session_get(config->store, id, &stored, error);
        created = rc == CAP_OK;
    }
    if (rc == CAP_OK && stored.status == STORE_SESSION_PARKED && stored.expires_at &&
        stored.expires_at <= store_time(config->store)) {
        /* Past its time but not yet swept: expired now, as it would be at
         * the renewer's next turn. */
        sandbox_expire_sessions(config);
        rc = store_session_get(config->store, id, &stored, error);
    }
    if (rc == CAP_OK && stored.status == STORE_SESSION_EXPIRED) {
        snprintf(message, sizeof message,
                 "session %.200s expired: its saved state was dropped (idle too long, or the "
                 "store's quota); start a new one", id);
        *early = early_result(&stopped, CAP_STATUS_SESSION_ERROR, message);
    } else if (rc == CAP_OK && !live_here && !created && stored.status == STORE_SESSION_LIVE &&
               strcmp(stored.owner, store_node(config->store)) == 0 &&
               !take_orphan(config, id)) {
        snprintf(message, sizeof message,
                 "session %.200s is live in another sandbox of this process", id);
        *early = early_result(&stopped, CAP_STATUS_SESSION_ERROR, message);
    } else if (rc == CAP_OK && live_here &&
               !(stored.status == STORE_SESSION_LIVE &&
                 strcmp(stored.owner, store_node(config->store)) == 0)) {
        /* Parked or moved since this sandbox last ran it (another node
         * asked for it, or took it after a lost lease): its worker here is
         * stale.  The caller drops it; the call continues from the store. */
        live_here = *live_here_io = 0;
    }
    if (rc == CAP_OK && !stopped && !live_here && !created) {
        pthread_mutex_unlock(&config->store_lock);
        char owner[STORE_ID_SIZE];
        rc = claim_or_ask(config, id, owner, error);
        pthread_mutex_lock(&config->store_lock);
        if (rc == STORE_EBUSY) {
            store_session now; /* the holder now: not always the node asked */
            if (store_session_get(config->store, id, &now, NULL) == CAP_OK && now.owner[0])
                snprintf(owner, sizeof owner, "%s", now.owner);
            snprintf(message, sizeof message,
                     "session %.200s is busy on node %.100s: it did not park the session within "
                     "%g s (a call of it is still running there); try again later", id, owner,
                     park_wait_seconds(config));
            *early = early_result(&stopped, CAP_STATUS_SESSION_ERROR, message);
            rc = CAP_OK;
        }
    }
    store_call call = {0};
    int replayed = 0;
    if (rc == CAP_OK && !stopped) {
        rc = store_call_begin(config->store, id, options->idempotency_key, hash, &call, &replayed,
                              error);
        if (rc == STORE_EMOVED) { /* claimed by another node since this node's claim */
            snprintf(message, sizeof message, "%.300s: the call did not run; try again", error);
            *early = early_result(&stopped, CAP_STATUS_SESSION_ERROR, message);
            rc = CAP_OK;
        } else if (rc == STORE_EBUSY || rc == STORE_ECONFLICT) {
            snprintf(message, sizeof message, "%s", rc == STORE_EBUSY
                         ? "a call with this idempotency key is still running"
                         : "this idempotency key was used for a different request");
            *early = early_result(&stopped, CAP_STATUS_SESSION_ERROR, message);
            rc = CAP_OK;
        }
    }
    if (rc == CAP_OK && !stopped && replayed) {
        stopped = 1;
        *early = call.result ? sandbox_result_from_json(call.result) : NULL;
        if (*early) sandbox_result_add_note(*early, "replayed: this idempotency key's stored "
                                                    "result; the code did not run again");
        else *early = early_result(&stopped, CAP_STATUS_SESSION_ERROR, "the stored result is unreadable");
    } else if (rc == CAP_OK && !stopped) {
        *seq = call.seq;
        store_call previous = {0};
        if (call.seq > 1 &&
            store_call_get(config->store, id, call.seq - 1, &previous, NULL) == CAP_OK &&
            strcmp(previous.status, "interrupted") == 0)
            sandbox->interrupted_seq = call.seq - 1;
        store_call_clear(&previous);
    }
    store_call_clear(&call);
    pthread_mutex_unlock(&config->store_lock);
    if (rc != CAP_OK && !stopped) {
        snprintf(message, sizeof message, "the session store failed: %s", error);
        *early = early_result(&stopped, CAP_STATUS_SESSION_ERROR, message);
        rc = CAP_OK;
    }
    return stopped && !*early ? CAP_ENOMEM : CAP_OK;
}

int sandbox_durable_release_if_requested(cap_sandbox *sandbox, const char *session) {
    cap_config *config = sandbox->config;
    int released = 0;
    pthread_mutex_lock(&config->store_lock);
    store_session_release_if_requested(config->store, session, &released, NULL);
    pthread_mutex_unlock(&config->store_lock);
    return released;
}

void sandbox_durable_park(cap_sandbox *sandbox, const char *session, int forget) {
    cap_config *config = sandbox->config;
    pthread_mutex_lock(&config->store_lock);
    int rc = forget ? store_session_delete(config->store, session, NULL)
                    : store_session_set_status(config->store, session, STORE_SESSION_PARKED, NULL);
    if (rc != CAP_OK && rc != STORE_ENOTFOUND) remember_orphan(config, session);
    pthread_mutex_unlock(&config->store_lock);
    if (forget) page_files_remove(config->page_files, session); /* its memory leaves the disk too */
}

/* --- the public calls on durable sessions ---------------------------------------- */

int cap_session_exists(cap_config *config, const char *id) {
    if (!config || !config->store || !id) return 0;
    store_session stored;
    pthread_mutex_lock(&config->store_lock);
    int found = store_session_get(config->store, id, &stored, NULL) == CAP_OK &&
                stored.status != STORE_SESSION_EXPIRED;
    pthread_mutex_unlock(&config->store_lock);
    return found;
}

void sandbox_expire_sessions(cap_config *config) {
    store_expire(config->store, NULL, forget_page_file, config->page_files, NULL);
}

int cap_session_fork(cap_config *config, const char *source, const char *id, char *error) {
    if (!config || !source || !id) {
        sandbox_set_error(error, "cap_session_fork: missing argument");
        return CAP_EINVAL;
    }
    if (!config->store) {
        sandbox_set_error(error, "forking a session needs a store (cap_config_set_store)");
        return CAP_EINVAL;
    }
    pthread_mutex_lock(&config->store_lock);
    int rc = store_session_fork(config->store, source, id, "", config->session_ttl_ms, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc == STORE_ENOTFOUND)
        sandbox_set_error(error, "session %.200s has no saved state to fork (no call of it "
                                 "finished yet, or no such session)", source);
    else if (rc == STORE_EEXIST)
        sandbox_set_error(error, "a session named %.200s exists already", id);
    return rc == CAP_OK ? CAP_OK : rc == CAP_ENOMEM ? CAP_ENOMEM : CAP_EINVAL;
}

char *cap_session_history(cap_config *config, const char *id, char *error) {
    if (!config || !config->store || !id) {
        sandbox_set_error(error, "a session's history needs a store (cap_config_set_store)");
        return NULL;
    }
    store_call *calls = NULL;
    size_t count = 0;
    pthread_mutex_lock(&config->store_lock);
    store_session stored;
    int rc = store_session_get(config->store, id, &stored, error);
    if (rc == CAP_OK) rc = store_call_list(config->store, id, 0, 0, &calls, &count, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc != CAP_OK) {
        if (rc == STORE_ENOTFOUND) sandbox_set_error(error, "no session %.200s", id);
        return NULL;
    }
    static const char *const states[] = {"live", "parked", "expired"};
    cJSON *history = cJSON_CreateObject();
    cJSON_AddStringToObject(history, "state", states[stored.status]);
    cJSON_AddNumberToObject(history, "created_at_ms", (double)stored.created_at);
    cJSON_AddNumberToObject(history, "last_used_at_ms", (double)stored.last_used_at);
    cJSON *list = cJSON_AddArrayToObject(history, "calls");
    for (size_t i = 0; i < count; i++) {
        cJSON *call = cJSON_CreateObject();
        cJSON_AddNumberToObject(call, "seq", (double)calls[i].seq);
        cJSON_AddStringToObject(call, "status", calls[i].status);
        cJSON_AddNumberToObject(call, "started_at_ms", (double)calls[i].started_at);
        if (calls[i].finished_at) {
            cJSON_AddNumberToObject(call, "finished_at_ms", (double)calls[i].finished_at);
            cJSON_AddNumberToObject(call, "duration_ms",
                                    (double)(calls[i].finished_at - calls[i].started_at));
        }
        if (calls[i].idempotency_key[0])
            cJSON_AddStringToObject(call, "idempotency_key", calls[i].idempotency_key);
        cJSON_AddItemToArray(list, call);
    }
    store_call_list_free(calls, count);
    char *text = cJSON_PrintUnformatted(history);
    cJSON_Delete(history);
    if (!text) sandbox_set_error(error, "out of memory");
    return text;
}

/* --- tasks of the MCP server ------------------------------------------------------- */

/* The store's codes as the library's: a missing task or a taken id is the
 * caller's mistake (CAP_EINVAL); the message says which. */
static int task_result(int rc) {
    if (rc == CAP_OK || rc == CAP_ENOMEM) return rc;
    return rc == STORE_ENOTFOUND || rc == STORE_EEXIST || rc == STORE_ECONFLICT ? CAP_EINVAL
                                                                                : CAP_EIO;
}

int cap_task_create(cap_config *config, const char *id, const char *principal, int64_t ttl_ms,
                    char *error) {
    if (!config || !config->store || !id || !principal) {
        sandbox_set_error(error, "a stored task needs a store (cap_config_set_store)");
        return CAP_EINVAL;
    }
    /* The task names this node: its lease must be renewed from now on, or
     * other nodes would take the task for a dead node's (the renewer
     * otherwise starts with the first durable session call). */
    sandbox_start_lease_renewal(config);
    pthread_mutex_lock(&config->store_lock);
    /* Renewed now too: before the renewer's first turn the lease may have
     * run out already (it was taken when the store was opened). */
    store_renew(config->store, NULL, NULL);
    int rc = store_task_create(config->store, id, principal, ttl_ms, error);
    pthread_mutex_unlock(&config->store_lock);
    return task_result(rc);
}

int cap_task_finish(cap_config *config, const char *id, const char *status, const char *message,
                    const char *payload_json, char *error) {
    if (!config || !config->store || !id || !status) {
        sandbox_set_error(error, "a stored task needs a store (cap_config_set_store)");
        return CAP_EINVAL;
    }
    pthread_mutex_lock(&config->store_lock);
    int rc = store_task_finish(config->store, id, status, message, payload_json, error);
    pthread_mutex_unlock(&config->store_lock);
    return task_result(rc);
}

int cap_task_get(cap_config *config, const char *id, const char *interrupted_message,
                 const char *interrupted_payload, cap_task *out, char *error) {
    memset(out, 0, sizeof *out);
    if (!config || !config->store || !id || !interrupted_message || !interrupted_payload) {
        sandbox_set_error(error, "a stored task needs a store (cap_config_set_store)");
        return CAP_EINVAL;
    }
    store_task task;
    pthread_mutex_lock(&config->store_lock);
    int rc = store_task_get(config->store, id, interrupted_message, interrupted_payload, &task,
                            error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc != CAP_OK) return task_result(rc);
    snprintf(out->principal, sizeof out->principal, "%s", task.principal);
    snprintf(out->status, sizeof out->status, "%s", task.status);
    out->status_message = task.status_message; /* handed over */
    out->payload_json = task.payload;
    out->created_at_ms = task.created_at;
    out->updated_at_ms = task.updated_at;
    out->expires_at_ms = task.expires_at;
    return CAP_OK;
}

void cap_task_clear(cap_task *task) {
    if (!task) return;
    free(task->status_message);
    free(task->payload_json);
    task->status_message = task->payload_json = NULL;
}

static int add_job_count(void *context, const char *status, int64_t count) {
    buffer *out = context;
    char line[160];
    int length = snprintf(line, sizeof line, "capsule_jobs{status=\"%s\"} %lld\n", status,
                          (long long)count);
    return buffer_append(out, line, (size_t)length);
}

char *cap_config_store_metrics(cap_config *config, char *error) {
    if (!config) {
        sandbox_set_error(error, "cap_config_store_metrics: missing argument");
        return NULL;
    }
    if (!config->store) return strdup("");
    store_usage usage;
    buffer out = {0};
    pthread_mutex_lock(&config->store_lock);
    int rc = store_get_usage(config->store, &usage, error);
    if (rc == CAP_OK) {
        char text[2048];
        int length = snprintf(
            text, sizeof text,
            "# HELP capsule_store_blob_bytes Compressed bytes of the stored pages and files "
            "(what --store-quota counts).\n# TYPE capsule_store_blob_bytes gauge\n"
            "capsule_store_blob_bytes %llu\n"
            "# HELP capsule_store_raw_bytes Their bytes before compression.\n"
            "# TYPE capsule_store_raw_bytes gauge\ncapsule_store_raw_bytes %llu\n"
            "# HELP capsule_store_blobs Stored blobs (each page content once).\n"
            "# TYPE capsule_store_blobs gauge\ncapsule_store_blobs %llu\n"
            "# HELP capsule_store_sessions Durable sessions in the store.\n"
            "# TYPE capsule_store_sessions gauge\ncapsule_store_sessions %lld\n"
            "# HELP capsule_session_restores_total Sessions restored into a worker, by where "
            "their memory came from.\n# TYPE capsule_session_restores_total counter\n"
            "capsule_session_restores_total{source=\"store\"} %llu\n"
            "capsule_session_restores_total{source=\"page_file\"} %llu\n"
            "# HELP capsule_session_restore_seconds_total Time those restores took.\n"
            "# TYPE capsule_session_restore_seconds_total counter\n"
            "capsule_session_restore_seconds_total{source=\"store\"} %.6f\n"
            "capsule_session_restore_seconds_total{source=\"page_file\"} %.6f\n"
            "# HELP capsule_jobs Jobs in the store by status.\n# TYPE capsule_jobs gauge\n",
            (unsigned long long)usage.blob_bytes, (unsigned long long)usage.raw_bytes,
            (unsigned long long)usage.blob_count, (long long)usage.sessions,
            (unsigned long long)__atomic_load_n(&config->restores[0], __ATOMIC_RELAXED),
            (unsigned long long)__atomic_load_n(&config->restores[1], __ATOMIC_RELAXED),
            (double)__atomic_load_n(&config->restore_microseconds[0], __ATOMIC_RELAXED) / 1e6,
            (double)__atomic_load_n(&config->restore_microseconds[1], __ATOMIC_RELAXED) / 1e6);
        rc = buffer_append(&out, text, (size_t)length) == 0 ? CAP_OK : CAP_ENOMEM;
    }
    if (rc == CAP_OK) rc = store_job_counts(config->store, add_job_count, &out, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc == CAP_OK && sandbox_jobs_metrics(config, &out) != 0) rc = CAP_ENOMEM;
    if (rc == CAP_OK && buffer_append(&out, "", 1) != 0) rc = CAP_ENOMEM;
    if (rc != CAP_OK) {
        if (rc == CAP_ENOMEM) sandbox_set_error(error, "out of memory");
        buffer_free(&out);
        return NULL;
    }
    return out.data;
}
