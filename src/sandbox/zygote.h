/*
 * zygote.h — entry point of the zygote process (see zygote.c).
 */
#ifndef CAP_ZYGOTE_H
#define CAP_ZYGOTE_H

#include "../vfs/vfs.h"

/* The guest's scratch directories (in-memory); the working directory is
 * where relative paths, and input files given by value, land. */
#define GUEST_WORK_DIRECTORY "/work"
#define GUEST_TEMP_DIRECTORY "/tmp"
/* Where documentation given with cap_config_add_docs appears, read-only. */
#define GUEST_DOCS_DIRECTORY "/docs"
/* Where code mode's tool stubs appear, read-only (src/functions/code_mode.c). */
#define GUEST_SERVERS_DIRECTORY "/servers"
/* HTTP resources: reading /network/NAME makes the host fetch NAME's URL
 * ('F' frame: mount index byte, name; the host answers 'F': i32 errno, then
 * the body or a message). */
#define GUEST_NETWORK_DIRECTORY "/network"
/* Where installed packages appear (a read-only image per package set; a
 * session that needs more gets SITE_PACKAGES-2, -3, ...). */
#define GUEST_SITE_PACKAGES "/usr/local/lib/python3.11/site-packages"
/* Default artifacts directory: files left there are returned with the
 * result ('A' frames before 'R': name, NUL, bytes). */
#define GUEST_OUTPUT_DIRECTORY "/output"

/* A directory whose files the host produces on open ('F' frames carry the
 * mount's index byte, then the file name). */
typedef struct zygote_resource_mount {
    const char *path;
    char *const *names;
    int count;
    int writable; /* the host takes writes ('W' frames: index byte, name, NUL, u64 offset,
                     bytes; answered like 'F') */
} zygote_resource_mount;

/* A file the zygote places in its world (documentation, say). */
typedef struct zygote_file {
    char *name;
    unsigned char *data;
    size_t size;
} zygote_file;

/* What the guest's world is made of; the images are already open (and
 * mapped) in the host, so the zygote opens no host file itself. */
typedef struct zygote_world {
    vfs_image **images;
    const char *const *image_paths; /* guest mount points */
    int image_count;
    char *const *env;               /* NULL-terminated NAME=VALUE */
    const char *output_directory;   /* absolute guest path of the artifacts */
    const zygote_file *docs;        /* mounted read-only at GUEST_DOCS_DIRECTORY */
    int doc_count;
    const struct zygote_resource_mount *resource_mounts;
    int resource_mount_count;
    char *const *host_mounts;       /* guest paths of host directories ('H' frames: index
                                       byte, op byte, path, then NUL and input for ops that
                                       carry one; answer 'H' like 'F') */
    int host_mount_count;
    const int *host_writable;       /* per host mount: writes allowed (the host checks too) */
    const zygote_file *server_files; /* mounted read-only at GUEST_SERVERS_DIRECTORY */
    int server_file_count;
    int durable;                    /* keep the base and answer snapshots (durable.h) */
    const char *start_cache;        /* directory of start images (start_image.h), or NULL */
} zygote_world;

/* Runs in the freshly forked zygote; never returns. */
void zygote_main(const zygote_world *world, int control_fd) __attribute__((noreturn));

#endif
