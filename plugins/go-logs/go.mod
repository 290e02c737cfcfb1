module wasmcron.example/go-logs

go 1.27
