/*
 * docs.c — documentation given with cap_config_add_docs: the Markdown files
 * of a host directory, read once into the configuration and mounted
 * read-only at GUEST_DOCS_DIRECTORY, with a generated README.md that lists
 * them by title.
 */
#include "sandbox.h"

#include "../help/help.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DOC_BYTES (16u << 20)

void sandbox_docs_free(cap_config *config) {
    help_invalidate(config);
    for (int i = 0; i < config->doc_count; i++) {
        free(config->docs[i].name);
        free(config->docs[i].data);
    }
    config->doc_count = 0;
}

static int compare_docs(const void *a, const void *b) {
    return strcmp(((const zygote_file *)a)->name, ((const zygote_file *)b)->name);
}

/* The text after the first "# " heading line, else the file name. */
static void doc_title(const zygote_file *doc, char *title, size_t title_size) {
    const char *text = (const char *)doc->data, *end = text + doc->size;
    for (const char *line = text; line < end;) {
        const char *newline = memchr(line, '\n', (size_t)(end - line));
        const char *line_end = newline ? newline : end;
        if (line_end - line > 2 && line[0] == '#' && line[1] == ' ') {
            int length = (int)(line_end - line - 2);
            if (length > 0 && line[2 + length - 1] == '\r') length--;
            snprintf(title, title_size, "%.*s", length, line + 2);
            return;
        }
        line = line_end + 1;
    }
    snprintf(title, title_size, "%s", doc->name);
}

/* README.md: one line per document with its title.  A README.md of the
 * host directory is kept, below the generated index. */
static int build_docs_index(cap_config *config, zygote_file *host_readme) {
    buffer index = {0};
    const char heading[] = "# Documentation\n\nFiles in /docs:\n\n";
    int rc = buffer_append(&index, heading, sizeof heading - 1);
    for (int i = 0; rc == 0 && i < config->doc_count; i++) {
        char title[512], line[1024];
        doc_title(&config->docs[i], title, sizeof title);
        int n = snprintf(line, sizeof line, "- [%s](%s)\n", title, config->docs[i].name);
        rc = buffer_append(&index, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    }
    if (rc == 0 && host_readme) {
        rc = buffer_append(&index, "\n", 1);
        if (rc == 0) rc = buffer_append(&index, host_readme->data, host_readme->size);
    }
    char *name = strdup("README.md");
    if (rc != 0 || !name) {
        free(name);
        buffer_free(&index);
        return -ENOMEM;
    }
    config->docs[config->doc_count++] = (zygote_file){name, (unsigned char *)index.data, index.size};
    return 0;
}

static int read_doc(int directory_fd, const char *name, zygote_file *doc, char *error) {
    int fd = openat(directory_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return 1; /* not a regular file: not documentation */
    }
    if ((uint64_t)st.st_size > MAX_DOC_BYTES) {
        close(fd);
        sandbox_set_error(error, "documentation file %.100s is larger than %u bytes", name,
                          MAX_DOC_BYTES);
        return -EFBIG;
    }
    doc->size = (size_t)st.st_size;
    doc->data = malloc(doc->size + 1);
    doc->name = strdup(name);
    size_t done = 0;
    while (doc->data && done < doc->size) {
        ssize_t n = read(fd, doc->data + done, doc->size - done);
        if (n <= 0) break;
        done += (size_t)n;
    }
    close(fd);
    doc->size = done;
    if (!doc->data || !doc->name) {
        free(doc->data);
        free(doc->name);
        sandbox_set_error(error, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

int cap_config_add_docs(cap_config *config, const char *host_directory, char *error) {
    if (!config || !host_directory) {
        sandbox_set_error(error, "cap_config_add_docs: missing argument");
        return CAP_EINVAL;
    }
    DIR *directory = opendir(host_directory);
    if (!directory) {
        sandbox_set_error(error, "cannot open documentation directory %.150s: %s",
                          host_directory, strerror(errno));
        return CAP_EIO;
    }
    sandbox_docs_free(config);
    zygote_file host_readme = {0};
    int rc = 0;
    struct dirent *entry;
    while (rc >= 0 && (entry = readdir(directory))) {
        size_t length = strlen(entry->d_name);
        if (length < 4 || strcmp(entry->d_name + length - 3, ".md") != 0) continue;
        if (config->doc_count == MAX_DOCS - 1) {
            sandbox_set_error(error, "too many documentation files (at most %d)", MAX_DOCS - 1);
            rc = -E2BIG;
            break;
        }
        int is_readme = strcmp(entry->d_name, "README.md") == 0;
        zygote_file *doc = is_readme ? &host_readme : &config->docs[config->doc_count];
        rc = read_doc(dirfd(directory), entry->d_name, doc, error);
        if (rc == 0 && !is_readme) config->doc_count++;
    }
    closedir(directory);
    if (rc >= 0) {
        qsort(config->docs, (size_t)config->doc_count, sizeof config->docs[0], compare_docs);
        rc = build_docs_index(config, host_readme.name ? &host_readme : NULL);
        if (rc) sandbox_set_error(error, "out of memory");
    }
    free(host_readme.name);
    free(host_readme.data);
    help_invalidate(config); /* the index has the new files on the next search */
    if (rc < 0) {
        sandbox_docs_free(config);
        return rc == -ENOMEM ? CAP_ENOMEM : CAP_EINVAL;
    }
    return CAP_OK;
}
