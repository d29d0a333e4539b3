/*
 * http.h — the host side of /network/<name>: fetches done by the parent on
 * behalf of a worker, confined to an allow-list of URL prefixes.
 */
#ifndef CAP_HTTP_H
#define CAP_HTTP_H

#include <stddef.h>

#include "buffer.h"

typedef struct http_policy {
    char *const *allowed_prefixes; /* "http://127.0.0.1:8000/", "https://api.example.com/" */
    int allowed_count;
    double timeout_seconds;        /* whole transfer, redirects included */
    size_t max_bytes;              /* body size cap */
    const char *accept;            /* an Accept header, or NULL */
    int keep_error_body;           /* 1: an HTTP 4xx/5xx leaves its body in `body` (its message) */
} http_policy;

/* 1 if `url` lies under one of the allowed prefixes (a prefix matches only
 * up to a boundary: "http://h:80" does not allow "http://h:8000/"). */
int http_allowed(const http_policy *policy, const char *url);

/* Fetches `url` into `body`, following at most a few redirects, each
 * re-checked against the allow-list.  Returns 0 or a negative errno, with
 * a message in `message` (256 bytes): -EACCES (not allowed), -ENOENT (404),
 * -ETIMEDOUT, -EFBIG (over max_bytes), -EIO (anything else). */
int http_fetch(const http_policy *policy, const char *url, buffer *body, char *message);

/* Same, POSTing `request` (`request_size` bytes of JSON) to `url`;
 * redirects are not followed (a 3xx is -EIO). */
int http_post(const http_policy *policy, const char *url, const char *request,
              size_t request_size, buffer *body, char *message);

/* http_post with an "Authorization: `authorization`" header (NULL: none),
 * for a model endpoint's key, which is never logged or shown. */
int http_post_authorized(const http_policy *policy, const char *url, const char *authorization,
                         const char *request, size_t request_size, buffer *body, char *message);

/* http_post with extra "Name: value" headers (an API key, a version),
 * which are never logged or shown. */
int http_post_headers(const http_policy *policy, const char *url, const char *const *headers,
                      int header_count, const char *request, size_t request_size, buffer *body,
                      char *message);

#endif
