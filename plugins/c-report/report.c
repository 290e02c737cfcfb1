/*
 * Example job in C: a report over the files in a preopened folder.
 *
 * A plain WASI command (wasm32-wasi): the folder is the first argument
 * (default /data); prints one line per regular file (lines, bytes) and a
 * total, and fails (exit 1) if the folder cannot be read, as when the
 * declaration grants no [[dirs]] entry for it.
 *
 * Build: clang --target=wasm32-wasi --sysroot=/usr/share/wasi-sysroot -O2 -o report.wasm report.c
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int count_file(const char *path, long *lines, long *bytes) {
    FILE *file = fopen(path, "rb");
    if (!file) return -1;
    int c;
    *lines = 0;
    *bytes = 0;
    while ((c = fgetc(file)) != EOF) {
        (*bytes)++;
        if (c == '\n') (*lines)++;
    }
    fclose(file);
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/data";
    const char *job = getenv("WASMCRON_JOB");
    DIR *folder = opendir(dir);
    if (!folder) {
        fprintf(stderr, "%s: cannot read %s: %s\n", job ? job : "report", dir, strerror(errno));
        return 1;
    }
    char *names[1024];
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(folder)) && count < 1024) {
        if (entry->d_name[0] != '.') names[count++] = strdup(entry->d_name);
    }
    closedir(folder);
    qsort(names, count, sizeof names[0], by_name);

    printf("C report for %s (run %s)\n", dir, getenv("WASMCRON_RUN_ID") ? getenv("WASMCRON_RUN_ID") : "?");
    long files = 0, total_lines = 0, total_bytes = 0;
    for (int i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat info;
        long lines, bytes;
        if (stat(path, &info) == 0 && S_ISREG(info.st_mode) && count_file(path, &lines, &bytes) == 0) {
            printf("%-24s %6ld lines %8ld bytes\n", names[i], lines, bytes);
            files++;
            total_lines += lines;
            total_bytes += bytes;
        }
        free(names[i]);
    }
    printf("total: %ld files, %ld lines, %ld bytes\n", files, total_lines, total_bytes);
    return 0;
}
