// Example job in Go (GOOS=wasip1 GOARCH=wasm): a log summariser.
//
// Reads the trigger's payload or, when there is none, every *.log file in
// LOG_DIR (default /logs, a preopened folder), and counts lines by level
// (the first of DEBUG, INFO, WARN or WARNING, ERROR, FATAL on the line).
// Prints the counts and the most frequent error messages; fails the run
// when there are more ERROR and FATAL lines than MAX_ERRORS (when set), so
// the host records the failure and its message. Go's wasip1 port has no
// sockets: this job works on what the host preopens for it.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

var levels = []string{"DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

type summary struct {
	lines  int
	levels map[string]int
	errors map[string]int // message (the text after the level) -> count
}

func main() {
	job := os.Getenv("WASMCRON_JOB")
	if err := run(job); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", job, err)
		os.Exit(1)
	}
}

func run(job string) error {
	s := summary{levels: map[string]int{}, errors: map[string]int{}}
	payload, err := io.ReadAll(os.Stdin)
	if err != nil {
		return fmt.Errorf("reading the payload: %w", err)
	}
	source := "the payload"
	if len(payload) > 0 {
		if err := s.add(strings.NewReader(string(payload))); err != nil {
			return fmt.Errorf("reading the payload: %w", err)
		}
	} else {
		dir := os.Getenv("LOG_DIR")
		if dir == "" {
			dir = "/logs"
		}
		files, err := filepath.Glob(filepath.Join(dir, "*.log"))
		if err != nil || len(files) == 0 {
			return fmt.Errorf("no payload, and no *.log files in LOG_DIR %s (is it preopened in [[dirs]]?)", dir)
		}
		for _, name := range files {
			file, err := os.Open(name)
			if err != nil {
				return fmt.Errorf("opening %s: %w", name, err)
			}
			err = s.add(file)
			file.Close()
			if err != nil {
				return fmt.Errorf("reading %s: %w", name, err)
			}
		}
		source = fmt.Sprintf("%d files in %s", len(files), dir)
	}

	counts := []string{}
	for _, level := range levels {
		counts = append(counts, fmt.Sprintf("%s %d", level, s.levels[level]))
	}
	fmt.Printf("%s: %d lines from %s: %s\n", job, s.lines, source, strings.Join(counts, ", "))
	for _, top := range s.topErrors(3) {
		fmt.Printf("  %dx %s\n", s.errors[top], top)
	}

	failures := s.levels["ERROR"] + s.levels["FATAL"]
	if limit := os.Getenv("MAX_ERRORS"); limit != "" {
		max, err := strconv.Atoi(limit)
		if err != nil {
			return fmt.Errorf("MAX_ERRORS=%q is not a whole number", limit)
		}
		if failures > max {
			return fmt.Errorf("ALERT: %d error lines, more than MAX_ERRORS=%d", failures, max)
		}
	}
	return nil
}

// add counts the lines of one log.
func (s *summary) add(log io.Reader) error {
	scanner := bufio.NewScanner(log)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		s.lines++
		words := strings.Fields(line)
		for i, word := range words {
			level := strings.ToUpper(strings.Trim(word, "[]:"))
			if level == "WARNING" {
				level = "WARN"
			}
			if slices.Contains(levels, level) {
				s.levels[level]++
				if level == "ERROR" || level == "FATAL" {
					s.errors[strings.Join(words[i+1:], " ")]++
				}
				break
			}
		}
	}
	return scanner.Err()
}

// topErrors is the n most frequent error messages, most frequent first.
func (s *summary) topErrors(n int) []string {
	messages := make([]string, 0, len(s.errors))
	for message := range s.errors {
		messages = append(messages, message)
	}
	sort.Slice(messages, func(i, j int) bool {
		if s.errors[messages[i]] != s.errors[messages[j]] {
			return s.errors[messages[i]] > s.errors[messages[j]]
		}
		return messages[i] < messages[j]
	})
	if len(messages) > n {
		messages = messages[:n]
	}
	return messages
}
