/*
 * fuzz_packages.c — libFuzzer target for what the host reads of packages:
 * wheels (zip archives, via libzip and wheel.c's checks), their METADATA,
 * index pages (PEP 503 HTML and PEP 691 JSON: deps.c, included whole for
 * its static parsers), and the PEP 440/508 text of requirements,
 * specifiers and markers.
 *
 * The first input byte picks the part (wheel, text, HTML page, JSON page);
 * the rest is its input.
 * Checked besides ASan/UBSan/LeakSanitizer:
 * - every call returns its documented codes;
 * - a wheel that unpacks writes an image that image.c accepts, so the
 *   writer never produces what the reader refuses;
 * - version comparison is antisymmetric, and each version equals itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../src/deps/deps.c"

static void fuzz_wheel(const uint8_t *data, size_t size) {
    char message[DEPS_MESSAGE_SIZE];
    char *metadata = NULL;
    if (wheel_metadata(data, size, &metadata, message) == 0) {
        char **values;
        size_t count;
        if (metadata_field_values(metadata, "Requires-Dist", &values, &count) == 0)
            free_strings(values, count);
        free(metadata);
    }
    vfs_image_builder *builder = vfs_image_builder_new();
    if (!builder) return;
    if (wheel_unpack(data, size, builder, message) == 0) {
        int fd = memfd_create("fuzz-image", 0);
        if (fd >= 0) {
            if (vfs_image_builder_write(builder, fd) == 0) {
                vfs_image *image;
                if (vfs_image_open_fd(fd, &image) != 0) abort(); /* writer and reader disagree */
                vfs_image_release(image);
            }
            close(fd);
        }
    }
    vfs_image_builder_free(builder);
}

static void fuzz_text(const uint8_t *data, size_t size) {
    char text[2048];
    if (size >= sizeof text) size = sizeof text - 1;
    memcpy(text, data, size);
    text[size] = '\0';
    /* Two strings: before and after the first newline. */
    char *second = strchr(text, '\n');
    if (second) *second++ = '\0';
    else second = "1.0";
    char error[256];
    int value = 0, other = 0;
    deps_requirement requirement;
    if (deps_requirement_parse(text, &requirement, error, sizeof error) == 0) {
        if (deps_requirement_applies(&requirement, second, &value, error, sizeof error) < -1)
            abort();
    }
    if (deps_specifier_contains(text, second, 0, &value, error, sizeof error) < -1) abort();
    if (deps_marker_evaluate(text, second, &value, error, sizeof error) < -1) abort();
    if (deps_version_compare(text, second, &value, error, sizeof error) == 0) {
        if (deps_version_compare(second, text, &other, NULL, 0) != 0) abort();
        if ((value > 0) != (other < 0) || (value == 0) != (other == 0)) abort();
        if (deps_version_compare(text, text, &value, NULL, 0) != 0 || value != 0) abort();
    }
    char normalized[DEPS_NAME_MAX];
    deps_normalize_name(text, normalized, sizeof normalized);
    wheel_name name;
    if (wheel_parse_filename(text, &name) == 0) wheel_is_pure(&name);
    char **values;
    size_t count;
    if (metadata_field_values(text, "Requires-Dist", &values, &count) == 0)
        free_strings(values, count);
}

/* An index page, as http_fetch hands it over (NUL-terminated buffer). */
static void fuzz_page(const uint8_t *data, size_t size, int json) {
    buffer page = {0};
    if (buffer_append(&page, data, size) != 0) return;
    candidate_list list = {0};
    if (json)
        parse_json_page(&page, "http://127.0.0.1/simple/demo/", "demo", 0, &list);
    else
        parse_html_page(&page, "http://127.0.0.1/simple/demo/", "demo", 0, &list);
    for (size_t i = 0; i < list.count; i++)
        if (!list.items[i].location || strcmp(list.items[i].version, "") == 0) abort();
    candidates_free(&list);
    buffer_free(&page);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    switch (data[0] & 3) {
    case 0: fuzz_text(data + 1, size - 1); break;
    case 1: fuzz_wheel(data + 1, size - 1); break;
    case 2: fuzz_page(data + 1, size - 1, 0); break;
    case 3: fuzz_page(data + 1, size - 1, 1); break;
    }
    return 0;
}
