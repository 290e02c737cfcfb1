// {{name}}: a wasmcron job in Go, as a WASI command (GOOS=wasip1
// GOARCH=wasm). The run's facts are in WASMCRON_* variables, the payload
// is stdin, and the exit code is the outcome (0 succeeded, anything else
// failed). Go's wasip1 port has no sockets: a Go job works on its payload
// and the folders its declaration preopens in [[dirs]].
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	payload, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "reading the payload: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s: hello from Go (run %s, attempt %s, trigger %s, %d bytes of payload)\n", os.Getenv("WASMCRON_JOB"),
		os.Getenv("WASMCRON_RUN_ID"), os.Getenv("WASMCRON_ATTEMPT"), os.Getenv("WASMCRON_TRIGGER"), len(payload))
}
