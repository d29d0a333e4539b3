/*
 * describe.c — `describe`: a file the code produced (an image, a PDF, text)
 * and a question, sent by the host to a configured model endpoint, an
 * OpenAI-compatible chat/completions URL or Anthropic's Messages API; the
 * model's answer as text.
 *
 * The endpoint is the only URL allowed (no redirects: it is a POST), its
 * key is sent as a bearer token (OpenAI) or x-api-key (Anthropic) and
 * never shown.  The file's media type is read from its first bytes, never
 * from its name; sizes are capped before anything is encoded, an image's
 * from its header (nothing the guest made is decoded here: the MCP tool's
 * session program shrinks large images with the guest's own Pillow).  One
 * function serves the MCP tool, the guest's capsule.describe() (on the call
 * channel) and cap_config_describe.
 */
#include "describe.h"
#include "describe_media.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/buffer.h" /* base64_encode */
#include "../sandbox/http.h"
#include "../sandbox/sandbox.h"

#define DEFAULT_OPENAI_MODEL "gpt-4o-mini"
#define DEFAULT_ANTHROPIC_MODEL "claude-sonnet-4-5"
#define ANTHROPIC_VERSION "2023-06-01"
#define MAX_ANSWER_BYTES (4u << 20)
#define MAX_TOKENS 1024
#define DEFAULT_SECONDS 120.0

enum { API_AUTO, API_OPENAI, API_ANTHROPIC };

int cap_config_set_describe(cap_config *config, const char *url, const char *api_key,
                            const char *model, char *error) {
    if (!config) {
        sandbox_set_error(error, "cap_config_set_describe: missing config");
        return CAP_EINVAL;
    }
    if (url && ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
                strlen(url) >= 4096)) {
        sandbox_set_error(error, "describe: the endpoint must be an http:// or https:// URL "
                                 "(a chat/completions or a messages URL)");
        return CAP_EINVAL;
    }
    if ((api_key && (strlen(api_key) > 4000 || strpbrk(api_key, "\r\n"))) ||
        (model && (!*model || strlen(model) > 200))) {
        sandbox_set_error(error, "describe: the key must be one line of at most 4000 bytes, "
                                 "the model a name of at most 200");
        return CAP_EINVAL;
    }
    char **fields[] = {&config->describe_url, &config->describe_key, &config->describe_model};
    const char *values[] = {url, api_key, model};
    for (int i = 0; i < 3; i++) {
        if (!values[i]) continue;
        char *copy = strdup(values[i]);
        if (!copy) {
            sandbox_set_error(error, "out of memory");
            return CAP_ENOMEM;
        }
        if (*fields[i] && i == 1) explicit_bzero(*fields[i], strlen(*fields[i]));
        free(*fields[i]);
        *fields[i] = copy;
    }
    return CAP_OK;
}

int cap_config_set_describe_api(cap_config *config, const char *api, char *error) {
    if (!config) {
        sandbox_set_error(error, "cap_config_set_describe_api: missing config");
        return CAP_EINVAL;
    }
    if (!api || strcmp(api, "auto") == 0) config->describe_api = API_AUTO;
    else if (strcmp(api, "openai") == 0) config->describe_api = API_OPENAI;
    else if (strcmp(api, "anthropic") == 0) config->describe_api = API_ANTHROPIC;
    else {
        sandbox_set_error(error, "describe: the API is openai, anthropic or auto, not %.40s", api);
        return CAP_EINVAL;
    }
    return CAP_OK;
}

/* The API the endpoint speaks: the one set, else Anthropic's when the
 * URL's path ends in /messages (https://api.anthropic.com/v1/messages),
 * else OpenAI's chat/completions. */
static int endpoint_api(const cap_config *config) {
    if (config->describe_api != API_AUTO) return config->describe_api;
    const char *url = config->describe_url;
    size_t length = strcspn(url, "?#");
    while (length > 0 && url[length - 1] == '/') length--;
    return length >= 9 && strncmp(url + length - 9, "/messages", 9) == 0 ? API_ANTHROPIC
                                                                       : API_OPENAI;
}

int cap_config_describe_enabled(const cap_config *config) {
    return config && config->describe_url != NULL;
}

static char *data_url(const char *media_type, const unsigned char *data, size_t size) {
    if (!media_type) return NULL;
    char *encoded = base64_encode(data, size);
    size_t prefix = strlen("data:;base64,") + strlen(media_type);
    char *url = encoded ? malloc(prefix + strlen(encoded) + 1) : NULL;
    if (url) sprintf(url, "data:%s;base64,%s", media_type, encoded);
    free(encoded);
    return url;
}

/* A text file as a text part, for both APIs. */
static void text_file_part(cJSON *part, const char *name, const unsigned char *data,
                           size_t size) {
    char *file = describe_text_with_heading(name, data, size);
    if (!file) return;
    cJSON_AddStringToObject(part, "type", "text");
    cJSON_AddStringToObject(part, "text", file);
    free(file);
}

/* The chat/completions request: the question, then the file as an image
 * (a data URL), a PDF (a file part) or text. */
static cJSON *openai_request(const char *question, const char *name, const char *media_type,
                             const unsigned char *data, size_t size, cJSON *content) {
    cJSON *text = cJSON_CreateObject();
    cJSON_AddStringToObject(text, "type", "text");
    cJSON_AddStringToObject(text, "text", question);
    cJSON_AddItemToArray(content, text);
    cJSON *part = cJSON_CreateObject();
    char *encoded = NULL;
    if (strcmp(media_type, "text/plain") == 0) {
        text_file_part(part, name, data, size);
    } else if ((encoded = data_url(media_type, data, size))) {
        if (strcmp(media_type, "application/pdf") == 0) {
            cJSON_AddStringToObject(part, "type", "file");
            cJSON *file = cJSON_AddObjectToObject(part, "file");
            cJSON_AddStringToObject(file, "filename", name);
            cJSON_AddStringToObject(file, "file_data", encoded);
        } else {
            cJSON_AddStringToObject(part, "type", "image_url");
            cJSON_AddStringToObject(cJSON_AddObjectToObject(part, "image_url"), "url", encoded);
        }
    }
    free(encoded);
    cJSON_AddItemToArray(content, part);
    return content;
}

/* The Messages API request: the file first (Anthropic's advice: the
 * question reads better after what it is about) as an image block or a
 * PDF document block, each with a base64 source and its media_type, or
 * as text; then the question. */
static cJSON *anthropic_request(const char *question, const char *name, const char *media_type,
                                const unsigned char *data, size_t size, cJSON *content) {
    cJSON *part = cJSON_CreateObject();
    if (strcmp(media_type, "text/plain") == 0) {
        text_file_part(part, name, data, size);
    } else {
        char *encoded = base64_encode(data, size);
        int pdf = strcmp(media_type, "application/pdf") == 0;
        cJSON_AddStringToObject(part, "type", pdf ? "document" : "image");
        cJSON *source = cJSON_AddObjectToObject(part, "source");
        cJSON_AddStringToObject(source, "type", "base64");
        cJSON_AddStringToObject(source, "media_type", media_type);
        if (encoded) cJSON_AddStringToObject(source, "data", encoded);
        if (pdf) cJSON_AddStringToObject(part, "title", name);
        free(encoded);
    }
    cJSON_AddItemToArray(content, part);
    cJSON *text = cJSON_CreateObject();
    cJSON_AddStringToObject(text, "type", "text");
    cJSON_AddStringToObject(text, "text", question);
    cJSON_AddItemToArray(content, text);
    return content;
}

/* The request body for `api`: one user message whose content the API's
 * builder fills; NULL when memory ran out. */
static char *build_request(int api, const char *model, const char *question, const char *name,
                           const char *media_type, const unsigned char *data, size_t size) {
    cJSON *request = cJSON_CreateObject();
    cJSON_AddStringToObject(request, "model", model);
    cJSON_AddNumberToObject(request, "max_tokens", MAX_TOKENS);
    cJSON *message = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(request, "messages"), message);
    cJSON_AddStringToObject(message, "role", "user");
    cJSON *content = cJSON_AddArrayToObject(message, "content");
    if (api == API_ANTHROPIC) anthropic_request(question, name, media_type, data, size, content);
    else openai_request(question, name, media_type, data, size, content);
    char *json = cJSON_PrintUnformatted(request);
    cJSON_Delete(request);
    return json;
}

/* The text parts of `content` joined (each an object with "text"). */
static char *joined_text(const cJSON *content) {
    buffer text = {0};
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *piece = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(piece) && (!cJSON_IsString(type) || strcmp(type->valuestring, "text") == 0))
            buffer_append(&text, piece->valuestring, strlen(piece->valuestring));
    }
    if (!text.data) return NULL;
    if (buffer_append(&text, "", 1) != 0) {
        buffer_free(&text);
        return NULL;
    }
    return text.data;
}

/* The answer: chat/completions' choices[0].message.content (a string or
 * text parts), or the Messages API's content[] text blocks. */
static char *answer_text(int api, const cJSON *response) {
    if (api == API_ANTHROPIC)
        return joined_text(cJSON_GetObjectItemCaseSensitive(response, "content"));
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(response, "choices"), 0);
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(choice, "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(message, "content");
    if (cJSON_IsString(content)) return strdup(content->valuestring);
    return joined_text(content);
}

/* Why the provider refused, from an error body: both APIs put it in
 * error.message ({"error": {"message": ...}}, Anthropic's with "type":
 * "error"), else the start of the body when it is not JSON.  `out` gets
 * ": WHY" (clean UTF-8, at most ~200 bytes) or "". */
static void provider_reason(const buffer *body, char *out, size_t out_size) {
    out[0] = '\0';
    if (!body->data || body->size == 0) return;
    cJSON *parsed = cJSON_ParseWithLength(body->data, body->size);
    const cJSON *message =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(parsed, "error"), "message");
    const char *why = cJSON_IsString(message) ? message->valuestring : NULL;
    size_t length = why ? strlen(why) : body->size;
    if (length > 200) length = 200;
    char *clean = utf8_sanitize(why ? why : body->data, length);
    for (char *c = clean; c && *c; c++)
        if ((unsigned char)*c < 0x20) *c = ' ';
    if (clean) snprintf(out, out_size, why ? ": %s" : " (not JSON: %s)", clean);
    free(clean);
    cJSON_Delete(parsed);
}

/* The result of a describe call as JSON, or NULL when memory ran out. */
static char *result_json(const char *answer, const char *media_type, const char *model) {
    cJSON *result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "answer", answer);
    cJSON_AddStringToObject(result, "media_type", media_type);
    cJSON_AddStringToObject(result, "model", model);
    char *json = cJSON_PrintUnformatted(result);
    cJSON_Delete(result);
    return json;
}

/* describe_check_file (describe_media.c), as a describe_outcome. */
static describe_outcome check_file(const unsigned char *data, size_t size, const char *question,
                                   const char **media_type, char *error) {
    *media_type = describe_check_file(data, size, question, error);
    return *media_type ? DESCRIBE_OK : DESCRIBE_INVALID;
}

/* The program the MCP tool runs in the session to read the file: a fixed
 * expression (no name is left in the session's globals), evaluated with
 * __capsule_arguments__ = {"path": ...}.  Its value is {"base64": the
 * bytes}, {"size": n} when too large to send, or {"error": why}.  An image
 * over the caps is downscaled there, by the guest's own Pillow (a
 * thumbnail saved as PNG, smaller again while the PNG is over the byte
 * cap); one it cannot open (Pillow in the guest has no JPEG or WebP codec)
 * is an error.  The host never decodes what the guest made. */
#define SOURCE_IMAGE_BYTES 67108864 /* an image larger than this is not opened */
#define MAX_DOWNSCALED_PIXELS 40000000 /* nor one with more pixels (guest memory) */
_Static_assert(DESCRIBE_MAX_FILE_BYTES == 8388608 && DESCRIBE_MAX_IMAGE_BYTES == 5242880 &&
                   DESCRIBE_MAX_IMAGE_SIDE == 1568,
               "describe_read_program spells these numbers out");
const char describe_read_program[] =
    "(lambda g: (exec(r'''\n"
    "import base64, io, os\n"
    "def raw(path):\n"
    "    with open(path, 'rb') as f:\n"
    "        return {'base64': base64.b64encode(f.read()).decode()}\n"
    "def main(path):\n"
    "    size = os.path.getsize(path)\n"
    "    with open(path, 'rb') as f:\n"
    "        head = f.read(16)\n"
    "    image = (head[:8] == b'\\x89PNG\\r\\n\\x1a\\n' or head[:3] == b'\\xff\\xd8\\xff'\n"
    "             or head[:6] in (b'GIF87a', b'GIF89a') or (head[:4] == b'RIFF' and head[8:12] == b'WEBP'))\n"
    "    if not image:\n"
    "        return {'size': size} if size > MAX_FILE else raw(path)\n"
    "    if size > MAX_SOURCE:\n"
    "        return {'error': f'the image has {size} bytes, too many to make it smaller'}\n"
    "    try:\n"
    "        from PIL import Image\n"
    "        picture = Image.open(path)\n"
    "        width, height = picture.size\n"
    "    except Exception as error:\n"
    "        if size <= MAX_IMAGE:\n"
    "            return raw(path)\n"
    "        return {'error': f'cannot open the image to make it smaller ({type(error).__name__}: {error})'}\n"
    "    try:\n"
    "        with picture:\n"
    "            if max(width, height) <= SIDE and size <= MAX_IMAGE:\n"
    "                return raw(path)\n"
    "            if width * height > MAX_PIXELS:\n"
    "                return {'error': f'the image is {width}x{height} px, too large to make smaller'}\n"
    "            alpha = picture.mode in ('RGBA', 'LA', 'PA') or 'transparency' in picture.info\n"
    "            small = picture.convert('RGBA' if alpha else 'RGB')\n"
    "            small.thumbnail((SIDE, SIDE))\n"
    "            out = io.BytesIO()\n"
    "            small.save(out, 'PNG')\n"
    "            while out.tell() > MAX_IMAGE and max(small.size) > 64:\n"
    "                small.thumbnail((max(small.size) * 3 // 4,) * 2)\n"
    "                out = io.BytesIO()\n"
    "                small.save(out, 'PNG')\n"
    "            return {'base64': base64.b64encode(out.getvalue()).decode(),\n"
    "                    'downscaled': [width, height, small.width, small.height]}\n"
    "    except Exception as error:\n"
    "        return {'error': f'cannot make the image smaller ({type(error).__name__}: {error})'}\n"
    "''', g), g['main'](__capsule_arguments__['path']))[1])({'MAX_FILE': 8388608, "
    "'MAX_IMAGE': 5242880, 'SIDE': 1568, 'MAX_SOURCE': 67108864, 'MAX_PIXELS': 40000000})";

describe_outcome describe_file(cap_config *config, const void *data, size_t size,
                               const char *name, const char *question, double timeout_seconds,
                               char **json, char *error) {
    *json = NULL;
    if (!cap_config_describe_enabled(config)) {
        sandbox_set_error(error, "describe is not available: the server has no model endpoint "
                                 "(capsule serve --describe-url URL --describe-key-file FILE)");
        return DESCRIBE_OFF;
    }
    const char *media_type = NULL;
    describe_outcome checked = check_file(data, size, question, &media_type, error);
    if (checked != DESCRIBE_OK) return checked;
    int api = endpoint_api(config);
    const char *model = config->describe_model ? config->describe_model
                        : api == API_ANTHROPIC ? DEFAULT_ANTHROPIC_MODEL
                                               : DEFAULT_OPENAI_MODEL;
    char *request = build_request(api, model, question, name && *name ? name : "file", media_type,
                                  data, size);
    if (!request) {
        sandbox_set_error(error, "out of memory");
        return DESCRIBE_FAILED;
    }
    char *allowed[] = {config->describe_url};
    http_policy policy = {allowed, 1,
                          timeout_seconds > 0 && timeout_seconds < DEFAULT_SECONDS
                              ? timeout_seconds
                              : DEFAULT_SECONDS,
                          MAX_ANSWER_BYTES, "application/json", 1};
    /* The key travels only in these headers, which are wiped after. */
    char key_header[4200] = "";
    const char *headers[2];
    int header_count = 0;
    if (config->describe_key) {
        snprintf(key_header, sizeof key_header,
                 api == API_ANTHROPIC ? "x-api-key: %s" : "Authorization: Bearer %s",
                 config->describe_key);
        headers[header_count++] = key_header;
    }
    if (api == API_ANTHROPIC) headers[header_count++] = "anthropic-version: " ANTHROPIC_VERSION;
    buffer body = {0};
    char message[256] = "";
    int rc = http_post_headers(&policy, config->describe_url, headers, header_count, request,
                               strlen(request), &body, message);
    explicit_bzero(key_header, sizeof key_header);
    free(request);
    if (rc != 0) {
        char reason[256];
        provider_reason(&body, reason, sizeof reason);
        buffer_free(&body);
        sandbox_set_error(error, "describe: the model endpoint failed: %s%s", message, reason);
        return rc == -ETIMEDOUT ? DESCRIBE_TIMEOUT : DESCRIBE_FAILED;
    }
    cJSON *response = cJSON_ParseWithLength(body.data ? body.data : "", body.size);
    char *answer = response ? answer_text(api, response) : NULL;
    if (!answer) {
        char reason[256] = "";
        if (!response) provider_reason(&body, reason, sizeof reason);
        sandbox_set_error(error, "describe: the model endpoint's answer has no text (%s)%s",
                          api == API_ANTHROPIC ? "content[].text" : "choices[0].message.content",
                          reason);
    }
    cJSON_Delete(response);
    buffer_free(&body);
    if (!answer) return DESCRIBE_FAILED;
    char *clean = utf8_sanitize(answer, strlen(answer)); /* JSON strings must be UTF-8 */
    free(answer);
    *json = clean ? result_json(clean, media_type, model) : NULL;
    free(clean);
    if (!*json) {
        sandbox_set_error(error, "out of memory");
        return DESCRIBE_FAILED;
    }
    return DESCRIBE_OK;
}

char *cap_config_describe(cap_config *config, const void *data, size_t size, const char *name,
                          const char *question, double timeout_seconds, char *error) {
    char *json = NULL;
    if (!config) {
        sandbox_set_error(error, "cap_config_describe: missing config");
        return NULL;
    }
    describe_file(config, data, size, name, question, timeout_seconds, &json, error);
    return json;
}
