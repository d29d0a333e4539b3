/*
 * provider.c — files the host produces when the guest opens them, and
 * takes when the guest writes them ('F' and 'W' frames): /network's HTTP
 * resources, fetched with libcurl (http.c) under the allow-list, the
 * timeout and the size cap, with a name template's value percent-encoded
 * into its URL; and the embedder's resource providers, whose callbacks run
 * here, on the run's thread.
 */
#include "sandbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "http.h"

#define DEFAULT_HTTP_TIMEOUT 10.0
#define DEFAULT_HTTP_MAX_BYTES (8u << 20)

/* A provider's read, on the caller's thread: its message or a generic one. */
static int provider_read(const struct provider *p, const char *name, buffer *body, char *message) {
    void *data = NULL;
    size_t size = 0;
    char error[CAP_ERROR_SIZE] = "";
    if (p->callbacks.read(p->userdata, name, &data, &size, error) != 0 || (!data && size)) {
        free(data);
        snprintf(message, 256, "%s", error[0] ? error : "the provider failed");
        return -EIO;
    }
    body->data = data;
    body->size = body->capacity = size;
    return 0;
}

/* A worker's 'W' frame: the index of a resource mount, a file name, NUL,
 * a u64 offset and the bytes written there, for a provider that takes
 * writes.  Answered with a 'W' frame like 'F' (errno, then a message). */
static int answer_store(const cap_config *config, int fd, const char *payload, size_t size) {
    int http_mounts = config->resource_count > 0;
    int mount = size > 0 ? (unsigned char)payload[0] - http_mounts : -1;
    const char *name = payload + 1;
    const char *nul = size > 1 ? memchr(name, '\0', size - 1) : NULL;
    size_t name_size = nul ? (size_t)(nul - name) : 0;
    char message[256] = "no such resource";
    int32_t rc = -ENOENT;
    if (mount >= 0 && mount < config->provider_count && nul && name_size &&
        size - 2 - name_size >= 8) {
        const struct provider *p = &config->providers[mount];
        int known = p->name_count < 0 && !memchr(name, '/', name_size) &&
                    strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
        for (int i = 0; i < p->name_count; i++) known |= strcmp(p->names[i], name) == 0;
        uint64_t offset;
        memcpy(&offset, nul + 1, 8);
        const char *data = nul + 9;
        size_t data_size = size - 2 - name_size - 8;
        char error[CAP_ERROR_SIZE] = "";
        if (!p->callbacks.write) {
            rc = -EROFS;
            snprintf(message, sizeof message, "read-only");
        } else if (known) {
            rc = p->callbacks.write(p->userdata, name, offset, data, data_size, error) ? -EIO : 0;
            snprintf(message, sizeof message, "%s", error[0] ? error : "the provider failed");
        }
    }
    buffer reply = {0};
    int status = buffer_append(&reply, &rc, sizeof rc);
    if (status == 0 && rc) status = buffer_append(&reply, message, strlen(message));
    if (status == 0) status = frame_write(fd, 'W', reply.data, reply.size);
    buffer_free(&reply);
    return status;
}

/* The URL template with its "{}" replaced by `value`, percent-encoded
 * (all but RFC 3986's unreserved characters), so a name cannot add a path
 * segment, a query or a host to the URL. */
static char *fill_template(const char *url, const char *value, size_t value_size) {
    const char *hole = strstr(url, "{}");
    size_t before = (size_t)(hole - url), after = strlen(hole + 2);
    char *out = malloc(before + 3 * value_size + after + 1);
    if (!out) return NULL;
    memcpy(out, url, before);
    char *p = out + before;
    for (size_t i = 0; i < value_size; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~')
            *p++ = (char)c;
        else
            p += sprintf(p, "%%%02X", c);
    }
    memcpy(p, hole + 2, after + 1);
    return out;
}

/* A worker's 'F' frame's request: the index of a resource mount, then a
 * file name.  Every field comes from the worker, so each is checked.
 * Returns 0 with the bytes in *body, or a negative errno with a message
 * (at most 256 bytes with its NUL) in `message`. */
int sandbox_fetch_resource(const cap_config *config, const char *payload, size_t size,
                           double deadline, buffer *body, char *message) {
    int http_mounts = config->resource_count > 0;
    int mount = size > 0 ? (unsigned char)payload[0] : -1;
    const char *name = payload + 1;
    size_t name_size = size > 0 ? size - 1 : 0;
    char *const *names = NULL;
    int count = 0;
    if (mount >= 0 && mount < http_mounts) {
        names = config->resource_names;
        count = config->resource_count;
    } else if (mount >= http_mounts && mount < http_mounts + config->provider_count) {
        names = config->providers[mount - http_mounts].names;
        count = config->providers[mount - http_mounts].name_count;
    }
    int index = -1;
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == name_size && memcmp(names[i], name, name_size) == 0) index = i;
    char *templated_url = NULL; /* an HTTP template filled in with the name's value */
    size_t value_start = 0, value_size = 0;
    for (int i = 0; index < 0 && mount >= 0 && mount < http_mounts && i < count; i++) {
        value_size = vfs_template_match(names[i], name, name_size, &value_start);
        if (value_size && (templated_url = fill_template(config->resource_urls[i],
                                                         name + value_start, value_size)))
            index = i;
    }
    char any_name[VFS_NAME_MAX + 1];
    if (count < 0 && name_size > 0 && name_size <= VFS_NAME_MAX &&
        !memchr(name, '/', name_size) && !memchr(name, '\0', name_size) &&
        !(name_size <= 2 && memcmp(name, "..", name_size) == 0)) {
        memcpy(any_name, name, name_size);
        any_name[name_size] = '\0';
        index = 0;
    }
    snprintf(message, 256, "no such resource");
    int32_t rc = -ENOENT;
    if (index >= 0 && mount >= http_mounts) {
        rc = provider_read(&config->providers[mount - http_mounts],
                           count < 0 ? any_name : names[index], body, message);
    } else if (index >= 0) {
        double left = deadline - sandbox_now_seconds();
        double timeout = config->http_timeout > 0 ? config->http_timeout : DEFAULT_HTTP_TIMEOUT;
        http_policy policy = {config->allowed_urls, config->allowed_count,
                              timeout < left ? timeout : left,
                              config->http_max_bytes ? config->http_max_bytes
                                                     : DEFAULT_HTTP_MAX_BYTES,
                              NULL, 0};
        const char *url = templated_url ? templated_url : config->resource_urls[index];
        rc = policy.timeout_seconds > 0 ? http_fetch(&policy, url, body, message) : -ETIMEDOUT;
    }
    if (rc == 0 && body->size > FRAME_MAX - sizeof rc) {
        buffer_free(body);
        snprintf(message, 256, "content larger than %u bytes", FRAME_MAX / 2);
        rc = -EFBIG;
    }
    free(templated_url);
    return rc;
}

int sandbox_fetch_reply(int fd, int32_t rc, const void *body, size_t body_size,
                        const char *message) {
    buffer reply = {0};
    int status = buffer_append(&reply, &rc, sizeof rc);
    if (status == 0)
        status = rc == 0 ? (body_size ? buffer_append(&reply, body, body_size) : 0)
                         : buffer_append(&reply, message, strlen(message));
    if (status == 0) status = frame_write(fd, 'F', reply.data, reply.size);
    buffer_free(&reply);
    return status;
}

/* Inside a job, a /network fetch is a step of the job (jobs.c): fetched
 * once per job, replayed on its reruns. */
sandbox_outcome sandbox_frame_fetch(sandbox_exchange *exchange, const char *payload, size_t size) {
    const cap_config *config = exchange->sandbox->config;
    int http_mount = config->resource_count > 0 && size > 0 && payload[0] == 0;
    if (http_mount && exchange->sandbox->job && config->store)
        return sandbox_job_fetch(exchange, payload, size);
    buffer body = {0};
    char message[256];
    int32_t rc = sandbox_fetch_resource(config, payload, size, exchange->deadline, &body, message);
    sandbox_fetch_reply(exchange->fd, rc, body.data, body.size, message);
    buffer_free(&body);
    return SANDBOX_CONTINUE;
}

sandbox_outcome sandbox_frame_store(sandbox_exchange *exchange, const char *payload, size_t size) {
    answer_store(exchange->sandbox->config, exchange->fd, payload, size);
    return SANDBOX_CONTINUE;
}
