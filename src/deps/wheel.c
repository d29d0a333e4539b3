/*
 * wheel.c — reading wheels (zip archives, PEP 427) with libzip.
 *
 * Wheels come from indexes and directories the embedder chose, but their
 * bytes are still input: a wheel could carry "../" names, symbolic links,
 * or a few kilobytes that inflate to gigabytes.  Every entry is checked
 * before a byte is inflated, and inflation stops at the declared size.
 */
#include "deps.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "../libraries/zip.h"

#define MAX_ENTRIES 100000
#define MAX_ENTRY_BYTES (256ull << 20)
#define MAX_TOTAL_BYTES (1ull << 30)
#define MAX_RATIO 200          /* inflated / compressed, for entries over 1 MiB */
#define RATIO_FLOOR (1u << 20)
#define MAX_METADATA (4u << 20)

static void say(char *message, const char *format, const char *detail) {
    snprintf(message, DEPS_MESSAGE_SIZE, format, detail);
}

int wheel_parse_filename(const char *filename, wheel_name *out) {
    memset(out, 0, sizeof *out);
    size_t length = strlen(filename);
    if (length < 5 || length > 512 || strcmp(filename + length - 4, ".whl") != 0) return -1;
    char copy[512];
    memcpy(copy, filename, length - 4);
    copy[length - 4] = '\0';
    char *parts[6];
    int count = 0;
    for (char *save = NULL, *part = strtok_r(copy, "-", &save); part;
         part = strtok_r(NULL, "-", &save)) {
        if (count == 6) return -1;
        parts[count++] = part;
    }
    if (count != 5 && count != 6) return -1;
    const char *fields[5] = {parts[0], parts[1], parts[count - 3], parts[count - 2],
                             parts[count - 1]};
    char *targets[5] = {out->name, out->version, out->python_tag, out->abi_tag,
                        out->platform_tag};
    size_t sizes[5] = {sizeof out->name, sizeof out->version, sizeof out->python_tag,
                       sizeof out->abi_tag, sizeof out->platform_tag};
    for (int i = 0; i < 5; i++) {
        if (!fields[i][0] || strlen(fields[i]) >= sizes[i]) return -1;
        strcpy(targets[i], fields[i]);
    }
    return 0;
}

int wheel_is_pure(const wheel_name *name) {
    if (strcmp(name->abi_tag, "none") != 0 || strcmp(name->platform_tag, "any") != 0) return 0;
    char tags[64];
    snprintf(tags, sizeof tags, "%s", name->python_tag);
    for (char *save = NULL, *tag = strtok_r(tags, ".", &save); tag;
         tag = strtok_r(NULL, ".", &save))
        if (strncmp(tag, "py3", 3) == 0) return 1;
    return 0;
}

static zip_t *open_archive(const unsigned char *data, size_t size, char *message) {
    char why[256];
    if (library_load_zip(why) != 0) {
        say(message, "cannot read wheels: %s", why);
        return NULL;
    }
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t *source = zip_source_buffer_create(data, size, 0, &error);
    zip_t *archive = source ? zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error)
                            : NULL;
    if (!archive) {
        say(message, "not a valid wheel (zip: %s)", zip_error_strerror(&error));
        if (source) zip_source_free(source);
    }
    zip_error_fini(&error);
    return archive;
}

/* Reads entry `index` whole, trusting nothing the directory claims. */
static int read_entry(zip_t *archive, zip_uint64_t index, const zip_stat_t *st,
                      unsigned char **data, char *message) {
    unsigned char *bytes = malloc(st->size ? st->size : 1);
    if (!bytes) {
        say(message, "%s: out of memory", st->name);
        return -1;
    }
    zip_file_t *file = zip_fopen_index(archive, index, 0);
    zip_int64_t got = 0;
    if (file) {
        zip_uint64_t total = 0;
        while (total < st->size &&
               (got = zip_fread(file, bytes + total, st->size - total)) > 0)
            total += (zip_uint64_t)got;
        unsigned char extra;
        if (got >= 0 && total == st->size && zip_fread(file, &extra, 1) == 0) got = 1;
        else got = -1;
        zip_fclose(file);
    }
    if (!file || got < 0) {
        free(bytes);
        say(message, "corrupt wheel: cannot read %.300s", st->name);
        return -1;
    }
    *data = bytes;
    return 0;
}

/* Checks one entry's name and sizes; 1 to skip it (a directory). */
static int check_entry(zip_t *archive, zip_uint64_t index, const zip_stat_t *st,
                       zip_uint64_t *total, char *message) {
    const char *name = st->name;
    if (!(st->valid & ZIP_STAT_NAME) || !(st->valid & ZIP_STAT_SIZE) ||
        !(st->valid & ZIP_STAT_COMP_SIZE)) {
        say(message, "corrupt wheel: entry without name or size%s", "");
        return -1;
    }
    zip_uint8_t system;
    zip_uint32_t attributes;
    if (zip_file_get_external_attributes(archive, index, 0, &system, &attributes) == 0 &&
        system == ZIP_OPSYS_UNIX && ((attributes >> 16) & S_IFMT) == S_IFLNK) {
        say(message, "unsafe wheel: %.300s is a symbolic link", name);
        return -1;
    }
    size_t length = strlen(name);
    if (length == 0 || name[0] == '/' || strchr(name, '\\') || strchr(name, ':')) {
        say(message, "unsafe wheel: entry name '%.300s'", name);
        return -1;
    }
    for (const char *start = name; *start;) {
        const char *slash = strchr(start, '/');
        size_t n = slash ? (size_t)(slash - start) : strlen(start);
        if ((n == 0 && slash) || (n == 1 && start[0] == '.') ||
            (n == 2 && start[0] == '.' && start[1] == '.')) {
            say(message, "unsafe wheel: entry name '%.300s'", name);
            return -1;
        }
        if (!slash) break;
        start = slash + 1;
    }
    if (name[length - 1] == '/') return 1;
    if (st->size > MAX_ENTRY_BYTES || (*total += st->size) > MAX_TOTAL_BYTES) {
        say(message, "wheel too large when unpacked (%.300s)", name);
        return -1;
    }
    if (st->size > RATIO_FLOOR && st->size / (st->comp_size ? st->comp_size : 1) > MAX_RATIO) {
        say(message, "suspicious compression ratio (zip bomb?) in %.300s", name);
        return -1;
    }
    return 0;
}

/* "pkg-1.0.dist-info/METADATA": exactly one directory, ending .dist-info. */
static int is_metadata_name(const char *name) {
    const char *slash = strchr(name, '/');
    return slash && strcmp(slash, "/METADATA") == 0 && slash - name > 10 &&
           memcmp(slash - 10, ".dist-info", 10) == 0;
}

int wheel_metadata(const unsigned char *data, size_t size, char **metadata, char *message) {
    zip_t *archive = open_archive(data, size, message);
    if (!archive) return -1;
    int rc = -1;
    say(message, "not a valid wheel: no .dist-info/METADATA%s", "");
    zip_int64_t count = zip_get_num_entries(archive, 0);
    for (zip_int64_t i = 0; i < count && i < MAX_ENTRIES; i++) {
        zip_stat_t st;
        if (zip_stat_index(archive, (zip_uint64_t)i, 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME) ||
            !is_metadata_name(st.name))
            continue;
        zip_uint64_t total = 0;
        if (check_entry(archive, (zip_uint64_t)i, &st, &total, message) != 0) break;
        if (st.size > MAX_METADATA) {
            say(message, "METADATA too large%s", "");
            break;
        }
        unsigned char *bytes;
        if (read_entry(archive, (zip_uint64_t)i, &st, &bytes, message) != 0) break;
        char *text = realloc(bytes, st.size + 1);
        if (!text) {
            free(bytes);
            break;
        }
        text[st.size] = '\0';
        *metadata = text;
        rc = 0;
        break;
    }
    zip_discard(archive);
    return rc;
}

/* Where a wheel path goes in site-packages, or NULL to leave it out:
 * NAME.data/purelib/ and NAME.data/platlib/ hold site-packages files, and
 * the other .data directories (scripts, headers, data) have no place in
 * the sandbox. */
static const char *installed_path(const char *name) {
    const char *slash = strchr(name, '/');
    if (!slash || slash - name < 5 || memcmp(slash - 5, ".data", 5) != 0) return name;
    if (strncmp(slash + 1, "purelib/", 8) == 0) return slash + 9;
    if (strncmp(slash + 1, "platlib/", 8) == 0) return slash + 9;
    return NULL;
}

int wheel_unpack(const unsigned char *data, size_t size, vfs_image_builder *builder,
                 char *message) {
    zip_t *archive = open_archive(data, size, message);
    if (!archive) return -1;
    zip_int64_t count = zip_get_num_entries(archive, 0);
    int rc = 0, has_metadata = 0;
    if (count < 0 || count > MAX_ENTRIES) {
        say(message, "wheel has too many entries%s", "");
        rc = -1;
    }
    zip_uint64_t total = 0;
    /* Every entry is checked before any is inflated. */
    for (zip_int64_t i = 0; rc == 0 && i < count; i++) {
        zip_stat_t st;
        if (zip_stat_index(archive, (zip_uint64_t)i, 0, &st) != 0) {
            say(message, "corrupt wheel: unreadable directory entry%s", "");
            rc = -1;
        } else if (check_entry(archive, (zip_uint64_t)i, &st, &total, message) < 0) {
            rc = -1;
        } else if (is_metadata_name(st.name)) {
            has_metadata = 1;
        }
    }
    if (rc == 0 && !has_metadata) {
        say(message, "not a valid wheel: no .dist-info/METADATA%s", "");
        rc = -1;
    }
    for (zip_int64_t i = 0; rc == 0 && i < count; i++) {
        zip_stat_t st;
        zip_stat_index(archive, (zip_uint64_t)i, 0, &st);
        const char *target = installed_path(st.name);
        if (check_entry(archive, (zip_uint64_t)i, &st, &(zip_uint64_t){0}, message) == 1 ||
            !target || !*target)
            continue;
        unsigned char *bytes;
        if (read_entry(archive, (zip_uint64_t)i, &st, &bytes, message) != 0) {
            rc = -1;
            break;
        }
        int added = vfs_image_builder_add(builder, target, bytes, st.size);
        free(bytes);
        if (added) {
            say(message, "cannot install %.300s (a duplicate or unusable name)", st.name);
            rc = -1;
        }
    }
    zip_discard(archive);
    return rc;
}

/* --- RFC 822 style metadata (METADATA, PKG-INFO) ------------------------------- */

void free_strings(char **strings, size_t count) {
    for (size_t i = 0; strings && i < count; i++) free(strings[i]);
    free(strings);
}

int metadata_field_values(const char *metadata, const char *field, char ***values,
                          size_t *count) {
    *values = NULL;
    *count = 0;
    size_t field_length = strlen(field), capacity = 0;
    for (const char *line = metadata; *line;) {
        const char *end = strchr(line, '\n');
        size_t length = end ? (size_t)(end - line) : strlen(line);
        if (length == 0 || (length == 1 && line[0] == '\r')) break; /* the body starts */
        if (length > field_length && strncasecmp(line, field, field_length) == 0 &&
            line[field_length] == ':') {
            const char *value = line + field_length + 1;
            size_t value_length = length - field_length - 1;
            while (value_length && isspace((unsigned char)*value)) value++, value_length--;
            while (value_length && isspace((unsigned char)value[value_length - 1]))
                value_length--;
            if (*count == capacity) {
                capacity = capacity ? capacity * 2 : 8;
                char **grown = realloc(*values, capacity * sizeof *grown);
                if (!grown) goto fail;
                *values = grown;
            }
            if (!((*values)[*count] = strndup(value, value_length))) goto fail;
            (*count)++;
        }
        if (!end) break;
        line = end + 1;
    }
    return 0;
fail:
    free_strings(*values, *count);
    *values = NULL;
    *count = 0;
    return -1;
}

char *metadata_field(const char *metadata, const char *field) {
    char **values;
    size_t count;
    if (metadata_field_values(metadata, field, &values, &count) != 0 || count == 0) {
        free_strings(values, count);
        return NULL;
    }
    char *value = values[0];
    values[0] = NULL;
    free_strings(values, count);
    return value;
}
