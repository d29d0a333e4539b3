/*
 * http.c — see http.h.  Runs in the parent; the worker never gets a socket.
 *
 * Redirects are not followed by libcurl: each Location is checked against
 * the allow-list here first, so a permitted server cannot bounce the fetch
 * to a host nobody allowed.  Only http and https are spoken.
 */
#include "http.h"

#include "../libraries/curl.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_REDIRECTS 5
#define MESSAGE_SIZE 256

int http_allowed(const http_policy *policy, const char *url) {
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) return 0;
    for (int i = 0; i < policy->allowed_count; i++) {
        const char *prefix = policy->allowed_prefixes[i];
        size_t length = strlen(prefix);
        if (length == 0 || strncmp(url, prefix, length) != 0) continue;
        char next = url[length];
        if (prefix[length - 1] == '/' || next == '\0' || next == '/' || next == '?' || next == '#')
            return 1;
    }
    return 0;
}

typedef struct transfer {
    buffer *body;
    size_t max_bytes;
    int too_big;
} transfer;

static size_t on_data(char *data, size_t size, size_t count, void *opaque) {
    transfer *t = opaque;
    size_t n = size * count;
    if (n > t->max_bytes - t->body->size) {
        t->too_big = 1;
        return 0; /* aborts the transfer */
    }
    return buffer_append(t->body, data, n) == 0 ? n : 0;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One fetch (or POST, with `post_body`), following allowed redirects.
 * `extra_headers` ("Name: value" lines, `extra_count` of them) are sent as
 * given and never logged: they carry keys. */
static int transfer_url(const http_policy *policy, const char *url,
                        const char *const *extra_headers, int extra_count, const char *post_body,
                        size_t post_size, buffer *body, char *message) {
    if (library_load_curl(message) != 0) return -ENOSYS;
    char current[4096];
    snprintf(current, sizeof current, "%s", url);
    double deadline = seconds_now() + policy->timeout_seconds;
    for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
        if (!http_allowed(policy, current)) {
            snprintf(message, MESSAGE_SIZE, "%s%.200s is not in the allow-list",
                     hop ? "redirect to " : "", current);
            return -EACCES;
        }
        double left = deadline - seconds_now();
        if (left <= 0) {
            snprintf(message, MESSAGE_SIZE, "timed out after %g s", policy->timeout_seconds);
            return -ETIMEDOUT;
        }
        CURL *curl = curl_easy_init();
        if (!curl) {
            snprintf(message, MESSAGE_SIZE, "cannot start an HTTP client");
            return -ENOMEM;
        }
        buffer_free(body);
        transfer t = {body, policy->max_bytes, 0};
        curl_easy_setopt(curl, CURLOPT_URL, current);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(left * 1000) + 1);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "capsule");
        struct curl_slist *headers = NULL;
        if (policy->accept) {
            char accept[512];
            snprintf(accept, sizeof accept, "Accept: %s", policy->accept);
            headers = curl_slist_append(NULL, accept);
        }
        for (int i = 0; i < extra_count; i++) headers = curl_slist_append(headers, extra_headers[i]);
        if (post_body) {
            headers = curl_slist_append(headers, "Content-Type: application/json");
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post_body);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post_size);
        }
        if (headers) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        CURLcode code = curl_easy_perform(curl);
        curl_slist_free_all(headers);
        long status = 0;
        char *location = NULL;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(curl, CURLINFO_REDIRECT_URL, &location);
        int rc = 0;
        if (t.too_big) {
            snprintf(message, MESSAGE_SIZE, "response larger than %zu bytes", policy->max_bytes);
            rc = -EFBIG;
        } else if (code == CURLE_OPERATION_TIMEDOUT) {
            snprintf(message, MESSAGE_SIZE, "timed out after %g s", policy->timeout_seconds);
            rc = -ETIMEDOUT;
        } else if (code != CURLE_OK) {
            snprintf(message, MESSAGE_SIZE, "fetch failed: %s", curl_easy_strerror(code));
            rc = -EIO;
        } else if (status >= 300 && status < 400 && location && !post_body) {
            snprintf(current, sizeof current, "%s", location);
            rc = 1; /* follow */
        } else if (status == 404 || status == 410) {
            snprintf(message, MESSAGE_SIZE, "HTTP %ld: not found", status);
            rc = -ENOENT;
        } else if (status < 200 || status >= 300) {
            snprintf(message, MESSAGE_SIZE, "HTTP %ld", status);
            rc = -EIO;
        }
        curl_easy_cleanup(curl);
        if (rc <= 0) {
            /* An HTTP error's body is kept when asked: it says why. */
            int http_error = code == CURLE_OK && !t.too_big && (status < 200 || status >= 300);
            if (rc && !(http_error && policy->keep_error_body)) buffer_free(body);
            return rc;
        }
    }
    buffer_free(body);
    snprintf(message, MESSAGE_SIZE, "more than %d redirects", MAX_REDIRECTS);
    return -EIO;
}

int http_fetch(const http_policy *policy, const char *url, buffer *body, char *message) {
    return transfer_url(policy, url, NULL, 0, NULL, 0, body, message);
}

int http_post(const http_policy *policy, const char *url, const char *request,
              size_t request_size, buffer *body, char *message) {
    return transfer_url(policy, url, NULL, 0, request ? request : "", request_size, body, message);
}

int http_post_authorized(const http_policy *policy, const char *url, const char *authorization,
                         const char *request, size_t request_size, buffer *body, char *message) {
    char header[4200] = "";
    if (authorization) snprintf(header, sizeof header, "Authorization: %s", authorization);
    const char *headers[] = {header};
    int rc = transfer_url(policy, url, headers, authorization ? 1 : 0, request ? request : "",
                          request_size, body, message);
    explicit_bzero(header, sizeof header);
    return rc;
}

int http_post_headers(const http_policy *policy, const char *url, const char *const *headers,
                      int header_count, const char *request, size_t request_size, buffer *body,
                      char *message) {
    return transfer_url(policy, url, headers, header_count, request ? request : "", request_size,
                        body, message);
}
