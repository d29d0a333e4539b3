/*
 * device.c — what every character device answers (stdio, control channels).
 *
 * A device supplies its own read and write; it reports itself as a
 * character device (not seekable, not a terminal: see wasi.c), refuses
 * truncate and listing, and is freed on its last close.
 */
#include "vfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int vfs_device_stat(vfs_file *file, vfs_metadata *st) {
    memset(st, 0, sizeof *st);
    st->type = VFS_CHARACTER_DEVICE;
    st->inode = (uint64_t)(uintptr_t)file; /* distinct per open device */
    st->links = 1;
    return 0;
}

int vfs_device_truncate(vfs_file *file, uint64_t size) {
    (void)file, (void)size;
    return -EINVAL;
}

int vfs_device_readdir(vfs_file *file, uint64_t cookie, vfs_dirent *entry) {
    (void)file, (void)cookie, (void)entry;
    return -ENOTDIR;
}

void vfs_device_close(vfs_file *file) {
    free(file);
}
