/*
 * help.c — the `help` index: SQLite FTS5 in memory, in the host.
 *
 * Entries (one row each): a section of a /docs file or of a shipped recipe
 * (split at Markdown headings outside code fences), and each granted host
 * function or code-mode tool (its name, description and arguments).  Text
 * is made valid UTF-8 before it is indexed, files with NUL bytes are
 * skipped as binary, and what is indexed is capped per file and in all, so
 * that hostile /docs cost bounded time and memory.
 *
 * A question is never FTS5 syntax: its words (letters, digits, non-ASCII
 * characters) are lower-cased, stop words dropped, each quoted, and the
 * quoted words joined with OR; BM25 then ranks, titles weighing more.
 */
#include "help.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../deps/deps.h" /* metadata_field */
#include "../libraries/sqlite.h"
#include "../sandbox/sandbox.h"
#include "../sandbox/zygote.h" /* GUEST_SITE_PACKAGES */
#include "../vfs/vfs.h"

#define MAX_INDEXED_PER_FILE (2u << 20)
#define MAX_INDEXED_TOTAL (48u << 20)
#define MAX_QUERY_BYTES (64u << 10) /* of a question, read; the rest is ignored */
#define MAX_QUERY_TERMS 32
#define MAX_TERM_BYTES 64
#define MAX_TEXT_BYTES 4000 /* of a section, returned with each result */
#define MAX_TITLE_BYTES 300
#define MAX_SECTION_BYTES (16u << 10) /* longer sections are indexed in parts */
#define MAX_METADATA_READ (256u << 10) /* of a distribution's METADATA */
#define MAX_DESCRIPTION_BYTES (16u << 10) /* of its description, indexed */
#define MAX_DISTRIBUTIONS 500 /* indexed per config, all environments together */
#define MAX_PRINCIPALS 256    /* who may see one distribution; more are not shown it */

/* An installed distribution's metadata, kept by the config (its index may
 * be rebuilt) from the first environment that had it on, and the
 * principals whose runs installed it: only their searches find it (which
 * packages a principal uses is its own business). */
typedef struct help_distribution {
    char *info;  /* "openpyxl-3.1.2.dist-info": one entry per distribution and version */
    char *title; /* "Package openpyxl 3.1.2: A Python library to read/write Excel..." */
    char *path;  /* its METADATA in the guest */
    char *text;  /* Summary, then the description: clean UTF-8, capped */
    char **principals;
    int principal_count;
} help_distribution;

typedef struct help_distributions {
    help_distribution *items;
    int count;
} help_distributions;

typedef struct help_index {
    sqlite3 *database;
    sqlite3_stmt *insert;
    sqlite3_stmt *grant; /* a row of package_access: a distribution's path, a principal */
    size_t indexed; /* bytes so far, against MAX_INDEXED_TOTAL */
} help_index;

/* The length of the valid UTF-8 sequence at `text` (at most `size`
 * bytes), or 0 when it is not one. */
static size_t utf8_sequence(const unsigned char *text, size_t size) {
    unsigned char c = text[0];
    size_t length = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                                 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (length == 0 || length > size) return 0;
    if (length == 2 && c < 0xC2) return 0; /* overlong */
    for (size_t i = 1; i < length; i++)
        if ((text[i] & 0xC0) != 0x80) return 0;
    if (length == 3) {
        unsigned code = (c & 0x0Fu) << 12 | (text[1] & 0x3Fu) << 6 | (text[2] & 0x3Fu);
        if (code < 0x800 || (code >= 0xD800 && code <= 0xDFFF)) return 0;
    }
    if (length == 4) {
        unsigned code = (c & 0x07u) << 18 | (text[1] & 0x3Fu) << 12;
        if (code < 0x10000 || code > 0x10FFFF) return 0;
    }
    return length;
}

/* A NUL-terminated copy of `size` bytes that is valid UTF-8 without
 * control characters (other than newline and tab): everything else
 * becomes '?' or is dropped.  JSON answers and FTS5 both rely on it. */
static char *clean_utf8(const char *text, size_t size) {
    char *out = malloc(size + 1), *p = out;
    if (!out) return NULL;
    const unsigned char *in = (const unsigned char *)text;
    for (size_t i = 0; i < size;) {
        size_t length = utf8_sequence(in + i, size - i);
        if (length == 0) {
            *p++ = '?';
            i++;
        } else if (length == 1) {
            if (in[i] >= 0x20 || in[i] == '\n' || in[i] == '\t') *p++ = (char)in[i];
            i++;
        } else {
            memcpy(p, in + i, length);
            p += length;
            i += length;
        }
    }
    *p = '\0';
    return out;
}

/* At most `limit` bytes of `text`, cut at a character boundary. */
static size_t utf8_prefix(const char *text, size_t limit) {
    size_t length = strlen(text);
    if (length <= limit) return length;
    while (limit > 0 && (text[limit] & 0xC0) == 0x80) limit--;
    return limit;
}

static int add_entry(help_index *index, const char *title, const char *path, const char *section,
                     const char *kind, const char *body, size_t body_size) {
    sqlite3_stmt *insert = index->insert;
    sqlite3_reset(insert);
    sqlite3_bind_text(insert, 1, title, (int)utf8_prefix(title, MAX_TITLE_BYTES), SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 2, body, (int)body_size, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 3, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 4, section, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 5, kind, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(insert);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* One section as entries of at most MAX_SECTION_BYTES, cut at a line end
 * (else a space, else a character boundary): snippet() and BM25 cost
 * grows with a row's size, and a long section is many answers anyway. */
static int add_section(help_index *index, const char *title, const char *path,
                       const char *section, const char *kind, const char *body, size_t size) {
    int rc = 0;
    for (int part = 1; rc == 0 && size > 0; part++) {
        size_t length = size;
        if (length > MAX_SECTION_BYTES) {
            length = MAX_SECTION_BYTES;
            size_t cut = length;
            while (cut > length / 2 && body[cut - 1] != '\n') cut--;
            if (cut == length / 2) {
                cut = length;
                while (cut > length / 2 && body[cut - 1] != ' ') cut--;
            }
            if (cut == length / 2) {
                cut = length;
                while (cut > 0 && (body[cut] & 0xC0) == 0x80) cut--;
            }
            length = cut ? cut : MAX_SECTION_BYTES;
        }
        char titled[2 * MAX_TITLE_BYTES + 32];
        if (part == 1 && length == size) snprintf(titled, sizeof titled, "%s", title);
        else snprintf(titled, sizeof titled, "%s (part %d)", title, part);
        rc = add_entry(index, titled, path, section, kind, body, length);
        body += length;
        size -= length;
    }
    return rc;
}

/* A Markdown heading line ("#" to "######", a space, text): its text. */
static int heading_text(const char *line, size_t length, const char **text, size_t *text_length) {
    size_t level = 0;
    while (level < length && level < 7 && line[level] == '#') level++;
    if (level == 0 || level > 6 || level >= length || line[level] != ' ') return 0;
    const char *start = line + level + 1, *end = line + length;
    while (start < end && *start == ' ') start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\r' || end[-1] == '#')) end--;
    if (end == start) return 0;
    *text = start;
    *text_length = (size_t)(end - start);
    return 1;
}

/* One Markdown file as sections, each an entry titled "DOCUMENT: HEADING"
 * (the document's title is its first heading, else `name`).  `text` is
 * clean UTF-8. */
static int index_markdown(help_index *index, const char *text, const char *path,
                          const char *name, const char *kind) {
    char document[MAX_TITLE_BYTES + 1], section[MAX_TITLE_BYTES + 1];
    snprintf(document, sizeof document, "%s", name);
    section[0] = '\0';
    int have_document = 0, fenced = 0, rc = 0;
    const char *start = text, *line = text, *end = text + strlen(text);
    while (rc == 0) {
        const char *newline = line < end ? memchr(line, '\n', (size_t)(end - line)) : NULL;
        const char *line_end = newline ? newline : end;
        size_t length = (size_t)(line_end - line);
        const char *heading = NULL;
        size_t heading_length = 0;
        if (line < end && length >= 3 && (strncmp(line, "```", 3) == 0 || strncmp(line, "~~~", 3) == 0))
            fenced = !fenced;
        int is_heading = line < end && !fenced && heading_text(line, length, &heading, &heading_length);
        if (is_heading || line >= end) {
            /* The section so far, unless it is empty. */
            size_t body_size = (size_t)(line - start);
            const char *body = start;
            while (body_size && (*body == '\n' || *body == ' ')) body++, body_size--;
            if (body_size) {
                char title[2 * MAX_TITLE_BYTES + 4];
                if (section[0] && strcmp(section, document) != 0)
                    snprintf(title, sizeof title, "%s: %s", document, section);
                else
                    snprintf(title, sizeof title, "%s", document);
                rc = add_section(index, title, path, section[0] ? section : document, kind, body,
                                 body_size);
            }
            if (line >= end) break;
            int shown = (int)(heading_length < MAX_TITLE_BYTES ? heading_length : MAX_TITLE_BYTES);
            snprintf(section, sizeof section, "%.*s", shown, heading);
            if (!have_document) {
                snprintf(document, sizeof document, "%s", section);
                have_document = 1;
            }
            start = line_end;
        }
        if (!newline) line = end;
        else line = newline + 1;
    }
    return rc;
}

/* A file of /docs or a recipe: skipped when binary (a NUL byte), capped
 * per file and in all, made clean UTF-8, then split into sections. */
static int index_file(help_index *index, const char *data, size_t size, const char *path,
                      const char *name, const char *kind) {
    if (memchr(data, '\0', size)) return 0;
    if (size > MAX_INDEXED_PER_FILE) size = MAX_INDEXED_PER_FILE;
    if (index->indexed >= MAX_INDEXED_TOTAL) return 0;
    if (size > MAX_INDEXED_TOTAL - index->indexed) size = MAX_INDEXED_TOTAL - index->indexed;
    index->indexed += size;
    char *text = clean_utf8(data, size);
    if (!text) return -ENOMEM;
    int rc = index_markdown(index, text, path, name, kind);
    free(text);
    return rc;
}

/* A host function or tool: its name (with its words apart: lookup_order
 * is also "lookup order"), description and arguments. */
static int index_function(help_index *index, const struct function *function) {
    const char *dot = strchr(function->name, '.');
    buffer body = {0};
    char words[2 * 64 + 8], path[2 * 64 + 40];
    snprintf(words, sizeof words, "%s", function->name);
    for (char *c = words; *c; c++)
        if (*c == '_' || *c == '.') *c = ' ';
    int rc = buffer_append(&body, words, strlen(words));
    if (rc == 0) rc = buffer_append(&body, "\n", 1);
    if (rc == 0) rc = buffer_append(&body, function->description, strlen(function->description));
    const cJSON *properties = cJSON_GetObjectItemCaseSensitive(function->schema, "properties");
    const cJSON *property;
    cJSON_ArrayForEach(property, properties) {
        const cJSON *description = cJSON_GetObjectItemCaseSensitive(property, "description");
        char line[512];
        int n = snprintf(line, sizeof line, "\n%s: %s", property->string,
                         cJSON_IsString(description) ? description->valuestring : "");
        if (rc == 0) rc = buffer_append(&body, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    }
    if (dot)
        snprintf(path, sizeof path, "/servers/%.*s/%s.py", (int)(dot - function->name),
                 function->name, dot + 1);
    else
        snprintf(path, sizeof path, "capsule.functions.%s", function->name);
    char *text = rc == 0 ? clean_utf8(body.data, body.size) : NULL;
    buffer_free(&body);
    if (!text) return -ENOMEM;
    rc = add_entry(index, function->name, path, function->name, dot ? "tool" : "function", text,
                   strlen(text));
    free(text);
    return rc;
}

/* One entry of CPython's documentation: trusted, compiled-in text, so it
 * is neither cleaned nor counted against the caps of /docs.  Its section
 * is the path's last part ("with", "gzip", "enumerate"). */
static int index_python_doc(help_index *index, const help_python_doc *doc) {
    const char *section = strrchr(doc->path, '/');
    if (!section && strncmp(doc->path, "builtins.", 9) == 0) section = doc->path + 8;
    section = section ? section + 1 : doc->path;
    return add_section(index, doc->title, doc->path, section, "python-doc", doc->text,
                       strlen(doc->text));
}

/* `principal` may see the distribution whose METADATA is at `path`. */
static int index_grant(help_index *index, const char *path, const char *principal) {
    sqlite3_reset(index->grant);
    sqlite3_bind_text(index->grant, 1, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(index->grant, 2, principal, -1, SQLITE_TRANSIENT);
    return sqlite3_step(index->grant) == SQLITE_DONE ? 0 : -EIO;
}

static int index_distribution(help_index *index, const help_distribution *distribution) {
    const char *name = distribution->info;
    int rc = add_section(index, distribution->title, distribution->path, name, "package",
                         distribution->text, strlen(distribution->text));
    for (int i = 0; rc == 0 && i < distribution->principal_count; i++)
        rc = index_grant(index, distribution->path, distribution->principals[i]);
    return rc;
}

static void index_free(help_index *index) {
    if (!index) return;
    sqlite3_finalize(index->grant);
    sqlite3_finalize(index->insert);
    sqlite3_close(index->database);
    free(index);
}

/* The index of what `config` has now.  Porter stemming so that "charts"
 * finds "chart"; the path, section and kind are stored, not searched. */
static int index_build(cap_config *config, help_index **out, char *error) {
    char why[256];
    if (library_load_sqlite(why) != 0) {
        sandbox_set_error(error, "help: %.240s", why);
        return CAP_ERUNTIME;
    }
    help_index *index = calloc(1, sizeof *index);
    if (!index) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    int rc = sqlite3_open_v2(":memory:", &index->database,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(index->database,
                          "CREATE VIRTUAL TABLE entries USING fts5(title, body, path UNINDEXED, "
                          "section UNINDEXED, kind UNINDEXED, "
                          "tokenize = 'porter unicode61 remove_diacritics 2');"
                          "CREATE TABLE package_access (path TEXT, principal TEXT,"
                          " PRIMARY KEY (path, principal));"
                          "BEGIN;",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(index->database,
                                "INSERT INTO entries (title, body, path, section, kind) "
                                "VALUES (?, ?, ?, ?, ?)", -1, &index->insert, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(index->database,
                                "INSERT OR IGNORE INTO package_access (path, principal) "
                                "VALUES (?, ?)", -1, &index->grant, NULL);
    if (rc != SQLITE_OK) {
        sandbox_set_error(error, "help: cannot create the index: %s",
                          index->database ? sqlite3_errmsg(index->database) : "no memory");
        index_free(index);
        return CAP_EIO;
    }
    int failed = 0;
    for (int i = 0; !failed && i < config->doc_count; i++) {
        const zygote_file *doc = &config->docs[i];
        if (strcmp(doc->name, "README.md") == 0) continue; /* the generated list of titles */
        char path[512];
        snprintf(path, sizeof path, "/docs/%s", doc->name);
        failed = index_file(index, (const char *)doc->data, doc->size, path, doc->name, "doc");
    }
    for (int i = 0; !failed && i < help_recipe_count; i++) {
        char path[256];
        snprintf(path, sizeof path, "capsule:recipes/%s", help_recipes[i].name);
        failed = index_file(index, help_recipes[i].text, strlen(help_recipes[i].text), path,
                            help_recipes[i].name, "recipe");
    }
    for (int i = 0; !failed && i < help_python_doc_count; i++)
        failed = index_python_doc(index, &help_python_docs[i]);
    help_distributions *distributions = config->help_distributions;
    for (int i = 0; !failed && distributions && i < distributions->count; i++)
        failed = index_distribution(index, &distributions->items[i]);
    for (int i = 0; !failed && i < config->function_count; i++)
        if (sandbox_function_granted(config, config->functions[i].name))
            failed = index_function(index, &config->functions[i]);
    if (!failed && sqlite3_exec(index->database, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        failed = -EIO;
    if (failed) {
        sandbox_set_error(error, "help: cannot build the index: %s",
                          failed == -ENOMEM ? "out of memory" : sqlite3_errmsg(index->database));
        index_free(index);
        return failed == -ENOMEM ? CAP_ENOMEM : CAP_EIO;
    }
    *out = index;
    return CAP_OK;
}

/* Words too common to tell documents apart. */
static const char *const stop_words[] = {
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "could", "do", "does", "for", "from",
    "get", "give", "given", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of",
    "on", "or", "please", "should", "so", "some", "that", "the", "their", "them", "then",
    "there", "these", "this", "to", "use", "using", "want", "was", "we", "what", "when", "where",
    "which", "who", "why", "will", "with", "would", "you", "your"};

static int is_stop_word(const char *word) {
    for (size_t i = 0; i < sizeof stop_words / sizeof *stop_words; i++)
        if (strcmp(word, stop_words[i]) == 0) return 1;
    return 0;
}

/* Words after which a stop word is a Python keyword the question is
 * about ("the with statement", "a for loop", "the is operator"). */
static int names_syntax(const char *word) {
    static const char *const syntax[] = {"statement", "statements", "keyword", "keywords",
                                         "loop", "loops", "clause", "clauses", "operator",
                                         "operators", "block", "blocks"};
    for (size_t i = 0; i < sizeof syntax / sizeof *syntax; i++)
        if (strcmp(word, syntax[i]) == 0) return 1;
    return 0;
}

/* The FTS5 query for a question: "w1" OR "w2" ... of its distinct words
 * (stop words dropped unless nothing else is left).  A word is a run of
 * ASCII letters and digits or of non-ASCII characters, so it never holds
 * a quote or any other FTS5 syntax.  "" when the question has no word. */
static int question_to_query(const char *question, buffer *query) {
    size_t size = strlen(question);
    if (size > MAX_QUERY_BYTES) size = MAX_QUERY_BYTES;
    char *text = clean_utf8(question, size);
    if (!text) return -ENOMEM;
    char terms[MAX_QUERY_TERMS][MAX_TERM_BYTES + 1], stopped[MAX_QUERY_TERMS][MAX_TERM_BYTES + 1];
    char previous[MAX_TERM_BYTES + 1] = ""; /* the last stop word, while it may be a keyword */
    int term_count = 0, stopped_count = 0;
    for (const char *p = text; *p && term_count < MAX_QUERY_TERMS;) {
        const unsigned char c = (unsigned char)*p;
        int word_char = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c >= 0x80;
        if (!word_char) {
            p++;
            continue;
        }
        const char *start = p;
        while (*p) {
            unsigned char d = (unsigned char)*p;
            if (!((d >= 'a' && d <= 'z') || (d >= 'A' && d <= 'Z') || (d >= '0' && d <= '9') ||
                  d >= 0x80))
                break;
            p++;
        }
        size_t length = (size_t)(p - start);
        if (length > MAX_TERM_BYTES) continue; /* no real word is that long */
        char word[MAX_TERM_BYTES + 1];
        for (size_t i = 0; i < length; i++)
            word[i] = (start[i] >= 'A' && start[i] <= 'Z') ? (char)(start[i] + 32) : start[i];
        word[length] = '\0';
        int stop = is_stop_word(word);
        if (!stop && previous[0] && names_syntax(word) && term_count < MAX_QUERY_TERMS - 1 &&
            strlen(previous) + 1 + length <= MAX_TERM_BYTES) {
            /* "with statement": the stop word was the point, and alone it
             * tells nothing apart; as the phrase "with statement" it does
             * (both are words: the phrase is still no FTS5 syntax). */
            char *phrase = terms[term_count++];
            size_t stop_length = strlen(previous);
            memcpy(phrase, previous, stop_length);
            phrase[stop_length] = ' ';
            memcpy(phrase + stop_length + 1, word, length + 1);
        }
        if (stop) memcpy(previous, word, length + 1);
        else previous[0] = '\0';
        char (*list)[MAX_TERM_BYTES + 1] = stop ? stopped : terms;
        int *count = stop ? &stopped_count : &term_count;
        int seen = 0;
        for (int i = 0; i < *count; i++) seen |= strcmp(list[i], word) == 0;
        if (!seen && *count < MAX_QUERY_TERMS) memcpy(list[(*count)++], word, length + 1);
    }
    free(text);
    char (*list)[MAX_TERM_BYTES + 1] = term_count ? terms : stopped;
    int count = term_count ? term_count : stopped_count;
    int rc = 0;
    for (int i = 0; rc == 0 && i < count; i++) {
        if (i) rc = buffer_append(query, " OR ", 4);
        if (rc == 0) rc = buffer_append(query, "\"", 1);
        if (rc == 0) rc = buffer_append(query, list[i], strlen(list[i]));
        if (rc == 0) rc = buffer_append(query, "\"", 1);
    }
    if (rc == 0) rc = buffer_append(query, "", 1); /* NUL-terminated */
    return rc ? -ENOMEM : 0;
}

/* A package's entries only for the principals whose runs installed it. */
static cJSON *run_query(help_index *index, const char *match, const char *principal, int limit,
                        char *error) {
    static const char sql[] =
        "SELECT title, path, section, kind, snippet(entries, 1, '**', '**', '...', 24), "
        "body, bm25(entries, 4.0, 1.0) AS score FROM entries WHERE entries MATCH ? "
        "AND (kind <> 'package' OR path IN "
        "(SELECT path FROM package_access WHERE principal = ?)) "
        "ORDER BY score LIMIT ?";
    sqlite3_stmt *statement = NULL;
    cJSON *results = cJSON_CreateArray();
    if (!results || sqlite3_prepare_v2(index->database, sql, -1, &statement, NULL) != SQLITE_OK) {
        sandbox_set_error(error, "help: %s", sqlite3_errmsg(index->database));
        cJSON_Delete(results);
        return NULL;
    }
    sqlite3_bind_text(statement, 1, match, -1, SQLITE_STATIC);
    sqlite3_bind_text(statement, 2, principal, -1, SQLITE_STATIC);
    sqlite3_bind_int(statement, 3, limit);
    int rc;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        cJSON *entry = cJSON_CreateObject();
        static const char *const names[] = {"title", "path", "section", "kind", "snippet"};
        for (int column = 0; column < 5; column++) {
            const char *value = (const char *)sqlite3_column_text(statement, column);
            cJSON_AddStringToObject(entry, names[column], value ? value : "");
        }
        const char *body = (const char *)sqlite3_column_text(statement, 5);
        body = body ? body : "";
        size_t shown = utf8_prefix(body, MAX_TEXT_BYTES);
        char *text = malloc(shown + 4);
        if (text) {
            memcpy(text, body, shown);
            strcpy(text + shown, shown < strlen(body) ? "..." : "");
            cJSON_AddStringToObject(entry, "text", text);
            free(text);
        }
        /* bm25() is lower for better matches: the score is its negation. */
        double score = -sqlite3_column_double(statement, 6);
        cJSON_AddNumberToObject(entry, "score", round(score * 1000) / 1000);
        cJSON_AddItemToArray(results, entry);
    }
    if (rc != SQLITE_DONE) {
        sandbox_set_error(error, "help: %s", sqlite3_errmsg(index->database));
        cJSON_Delete(results);
        results = NULL;
    }
    sqlite3_finalize(statement);
    return results;
}

int help_search(cap_config *config, const char *principal, const char *query, int limit,
                char **json, char *error) {
    if (!config || !query || !json) {
        sandbox_set_error(error, "help: missing argument");
        return CAP_EINVAL;
    }
    *json = NULL;
    if (limit == 0) limit = HELP_DEFAULT_LIMIT;
    if (limit < 0 || limit > HELP_MAX_LIMIT) {
        sandbox_set_error(error, "help: limit is 1 to %d", HELP_MAX_LIMIT);
        return CAP_EINVAL;
    }
    buffer match = {0};
    if (question_to_query(query, &match) != 0) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    int rc = CAP_OK;
    cJSON *results = NULL;
    pthread_mutex_lock(&config->help_lock);
    if (!config->help_index) rc = index_build(config, (help_index **)&config->help_index, error);
    if (rc == CAP_OK) {
        results = match.data[0] ? run_query(config->help_index, match.data,
                                            principal ? principal : "", limit, error)
                                : cJSON_CreateArray();
        if (!results) rc = CAP_EIO;
    }
    pthread_mutex_unlock(&config->help_lock);
    buffer_free(&match);
    if (rc != CAP_OK) return rc;
    cJSON *answer = cJSON_CreateObject();
    char *shown = clean_utf8(query, utf8_prefix(query, 200));
    cJSON_AddStringToObject(answer, "query", shown ? shown : "");
    free(shown);
    cJSON_AddItemToObject(answer, "results", results);
    *json = cJSON_PrintUnformatted(answer);
    cJSON_Delete(answer);
    if (!*json) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    return CAP_OK;
}

char *cap_config_help(cap_config *config, const char *principal, const char *query, int limit,
                      char *error) {
    char *json = NULL;
    return help_search(config, principal, query, limit, &json, error) == CAP_OK ? json : NULL;
}

void help_invalidate(cap_config *config) {
    pthread_mutex_lock(&config->help_lock);
    index_free(config->help_index);
    config->help_index = NULL;
    pthread_mutex_unlock(&config->help_lock);
}

/* The whole of a file of the image (at most `limit` bytes, NUL-terminated),
 * or NULL. */
static char *image_file(const vfs_backend_ops *ops, void *backend, const char *path, size_t limit) {
    vfs_file *file = NULL;
    if (ops->open(backend, path, VFS_O_READ, &file) != 0) return NULL;
    char *data = malloc(limit + 1);
    size_t size = 0, done = 0;
    while (data && size < limit &&
           file->ops->read(file, data + size, limit - size, size, &done) == 0 && done > 0)
        size += done;
    file->ops->close(file);
    if (data) data[size] = '\0';
    return data;
}

/* A distribution from its METADATA (untrusted: what a package's author
 * wrote): the Summary and the description (the body after the headers,
 * or the old Description header), capped and made clean UTF-8. */
static int read_distribution(const char *info, const char *metadata, help_distribution *out) {
    char *name = metadata_field(metadata, "Name"), *version = metadata_field(metadata, "Version");
    char *summary = metadata_field(metadata, "Summary");
    char *old_description = metadata_field(metadata, "Description");
    const char *body = strstr(metadata, "\n\n"), *crlf = strstr(metadata, "\r\n\r\n");
    if (crlf && (!body || crlf < body)) body = crlf + 2; /* written on Windows */
    body = body ? body + 2 : "";
    if (!*body && old_description) body = old_description;
    size_t body_size = strlen(body);
    if (body_size > MAX_DESCRIPTION_BYTES) body_size = MAX_DESCRIPTION_BYTES;
    buffer text = {0};
    int rc = summary ? buffer_append(&text, summary, strlen(summary)) : 0;
    if (rc == 0) rc = buffer_append(&text, "\n\n", 2);
    if (rc == 0) rc = buffer_append(&text, body, body_size);
    char title[MAX_TITLE_BYTES + 1], path[512];
    snprintf(title, sizeof title, "Package %.100s %.40s%s%.150s", name ? name : info,
             version ? version : "", summary ? ": " : "", summary ? summary : "");
    snprintf(path, sizeof path, "%s/%s/%s", GUEST_SITE_PACKAGES, info,
             strstr(info, ".dist-info") ? "METADATA" : "PKG-INFO");
    out->info = strdup(info);
    out->title = clean_utf8(title, strlen(title));
    out->path = strdup(path);
    out->text = rc == 0 ? clean_utf8(text.data, text.size) : NULL;
    buffer_free(&text);
    free(name);
    free(version);
    free(summary);
    free(old_description);
    if (out->info && out->title && out->path && out->text) return 0;
    free(out->info);
    free(out->title);
    free(out->path);
    free(out->text);
    return -ENOMEM;
}

/* Adds `principal` to those who may see `distribution` (and to the built
 * index); -ENOMEM or a full list leave it unseen by the principal. */
static void grant_distribution(cap_config *config, help_distribution *distribution,
                               const char *principal) {
    for (int i = 0; i < distribution->principal_count; i++)
        if (strcmp(distribution->principals[i], principal) == 0) return;
    if (distribution->principal_count >= MAX_PRINCIPALS) return;
    char **grown = realloc(distribution->principals,
                           (size_t)(distribution->principal_count + 1) * sizeof *grown);
    if (!grown) return;
    distribution->principals = grown;
    if (!(grown[distribution->principal_count] = strdup(principal))) return;
    distribution->principal_count++;
    if (config->help_index) index_grant(config->help_index, distribution->path, principal);
}

static void distribution_free(help_distribution *distribution) {
    free(distribution->info);
    free(distribution->title);
    free(distribution->path);
    free(distribution->text);
    for (int i = 0; i < distribution->principal_count; i++) free(distribution->principals[i]);
    free(distribution->principals);
}

void help_add_environment(cap_config *config, int image_fd, const char *principal) {
    if (!principal) principal = "";
    vfs_image *image = NULL;
    const vfs_backend_ops *ops;
    void *backend;
    if (!config || image_fd < 0 || vfs_image_open_fd(image_fd, &image) != 0) return;
    int rc = vfs_image_backend(image, &ops, &backend); /* which holds its own reference */
    vfs_image_release(image);
    if (rc != 0) return;
    vfs_file *root = NULL;
    if (ops->open(backend, "", VFS_O_READ | VFS_O_DIRECTORY, &root) != 0) root = NULL;
    pthread_mutex_lock(&config->help_lock);
    help_distributions *distributions = config->help_distributions;
    if (!distributions) distributions = config->help_distributions = calloc(1, sizeof *distributions);
    vfs_dirent entry;
    for (uint64_t cookie = 0; root && distributions && root->ops->readdir(root, cookie, &entry) == 1;
         cookie++) {
        size_t length = strlen(entry.name);
        int dist_info = length > 10 && strcmp(entry.name + length - 10, ".dist-info") == 0;
        int egg_info = length > 9 && strcmp(entry.name + length - 9, ".egg-info") == 0;
        if (!dist_info && !egg_info) continue;
        help_distribution *known = NULL;
        for (int i = 0; i < distributions->count && !known; i++)
            if (strcmp(distributions->items[i].info, entry.name) == 0)
                known = &distributions->items[i];
        if (known) {
            grant_distribution(config, known, principal);
            continue;
        }
        if (distributions->count >= MAX_DISTRIBUTIONS) continue;
        char path[VFS_NAME_MAX + 16];
        if (entry.type == VFS_DIRECTORY)
            snprintf(path, sizeof path, "%s/%s", entry.name, dist_info ? "METADATA" : "PKG-INFO");
        else
            snprintf(path, sizeof path, "%s", entry.name);
        char *metadata = image_file(ops, backend, path, MAX_METADATA_READ);
        help_distribution distribution = {0};
        if (metadata && read_distribution(entry.name, metadata, &distribution) == 0) {
            help_distribution *grown = realloc(distributions->items,
                                               (size_t)(distributions->count + 1) * sizeof *grown);
            if (grown) {
                distributions->items = grown;
                help_distribution *added = &grown[distributions->count++];
                *added = distribution;
                /* A built index takes it now; a later build takes them all. */
                if (config->help_index) index_distribution(config->help_index, added);
                grant_distribution(config, added, principal);
            } else {
                distribution_free(&distribution);
            }
        }
        free(metadata);
    }
    pthread_mutex_unlock(&config->help_lock);
    if (root) root->ops->close(root);
    ops->destroy(backend);
}

void help_free(cap_config *config) {
    index_free(config->help_index);
    config->help_index = NULL;
    help_distributions *distributions = config->help_distributions;
    for (int i = 0; distributions && i < distributions->count; i++)
        distribution_free(&distributions->items[i]);
    if (distributions) free(distributions->items);
    free(distributions);
    config->help_distributions = NULL;
    pthread_mutex_destroy(&config->help_lock);
}
