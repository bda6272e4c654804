package render

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A reload by signal waits until the command handles the signal: a load
// balancer sets its handlers only once it has read its configuration
// (seconds for a large one), and a signal before that takes its default
// action, which ends it. Here the command sets its handler 2 s after it
// starts; the reload sent at once is delivered then, and the command
// lives on.
func TestReloadSignalWaitsForTheCommandsHandler(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	got := filepath.Join(dir, "reloaded")
	script := `sleep 2; trap 'echo reloaded >> ` + got + `' USR2; while :; do sleep 0.05; done`
	var logs bytes.Buffer
	ex := &Exec{Command: CommandLine{"/bin/sh", "-c", script}, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := ex.Prepare(); err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan int, 1)
	go func() { ran <- ex.Run(ctx) }()
	defer func() {
		cancel()
		<-ran
	}()
	ex.Passed(PassResult{}) // the first pass: the command starts
	for deadline := time.Now().Add(20 * time.Second); !ex.started(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the command did not start")
		}
	}
	skipped, err := ex.Reload(ctx, syscall.SIGUSR2)
	if skipped != "" || err != nil {
		t.Fatalf("reload: skipped %q, %v; log:\n%s", skipped, err, &logs)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(got); strings.Contains(string(b), "reloaded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command did not take the reload; log:\n%s", &logs)
		}
	}
	select {
	case code := <-ran:
		t.Fatalf("the command ended (%d) after the reload; log:\n%s", code, &logs)
	default:
	}
	if !strings.Contains(logs.String(), "the reload signal waits for the command to handle it") {
		t.Errorf("the log does not say the reload waited:\n%s", &logs)
	}
}
