/* {{name}}: a wasmcron job in C, as a WASI command. The run's facts are in
 * WASMCRON_* variables, the payload is stdin, and the exit code is the
 * outcome (0 succeeded, anything else failed). */
#include <stdio.h>
#include <stdlib.h>

static const char *var(const char *name) {
    const char *value = getenv(name);
    return value ? value : "";
}

int main(void) {
    size_t payload = 0;
    char chunk[4096];
    size_t read;
    while ((read = fread(chunk, 1, sizeof chunk, stdin)) > 0) payload += read;
    printf("%s: hello from C (run %s, attempt %s, trigger %s, %zu bytes of payload)\n", var("WASMCRON_JOB"),
           var("WASMCRON_RUN_ID"), var("WASMCRON_ATTEMPT"), var("WASMCRON_TRIGGER"), payload);
    return 0;
}
