/*
 * describe_client.h — `describe` without a configured model endpoint: the
 * MCP client's own model (sampling/createMessage, the legacy request or a
 * 2026-07-28 input request), or else the file itself handed back to the
 * calling model.  Only the messages' shapes live here; describe_tool.c decides
 * which backend answers (endpoint → client's model → fallback).
 */
#ifndef CAPSULE_MCP_DESCRIBE_CLIENT_H
#define CAPSULE_MCP_DESCRIBE_CLIENT_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define DESCRIBE_CLIENT_MAX_TOKENS 1024

/* The params of sampling/createMessage asking `question` about the file
 * (`name` is only shown): an image as image content (base64 data and its
 * mimeType) or text as text, then the question as text.  A PDF cannot be
 * sampled (MCP sampling carries text, images and audio only): NULL with
 * `error`, and so when out of memory. */
cJSON *describe_client_sampling(const unsigned char *data, size_t size, const char *media_type,
                                const char *name, const char *question, char *error);

/* The model's text in a sampling/createMessage result (a text block, or
 * an array of blocks as 2025-11-25 allows), made valid UTF-8; NULL with
 * `error` when the result has no text. */
char *describe_client_answer(const cJSON *result, char *error);

/* The fallback tool result: a short text telling the calling model to look
 * at the file itself, then the file as image content (images) or an
 * embedded resource (text, or a PDF as a blob) at file://`path`. */
cJSON *describe_client_fallback(const unsigned char *data, size_t size, const char *media_type,
                                const char *path, const char *question);

#endif
