package render

import (
	"bytes"
	"context"
	"errors"
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
//
// Not parallel: an Exec reaps every child of the process while it runs.
func TestReloadSignalWaitsForTheCommandsHandler(t *testing.T) {
	logs := reloadTaken(t, func(got string) CommandLine {
		return CommandLine{"/bin/sh", "-c", `sleep 2; trap 'echo reloaded >> ` + got + `' USR2; while :; do sleep 0.05; done`}
	}, 20*time.Second)
	if !strings.Contains(logs.String(), "the reload signal waits for the command to handle it") {
		t.Errorf("the log does not say the reload waited:\n%s", logs)
	}
}

// A command that never handles the reload signal is not sent it: the
// reload fails after SignalReady with the files put back and not
// reloaded again (nothing reached the command, which runs the files it
// had), and the command lives on.
// Not parallel, as above.
func TestReloadSignalNotHandledIsNotSent(t *testing.T) {
	dir := t.TempDir()
	command := CommandLine{"/bin/sh", "-c", "while :; do sleep 0.05; done"}
	set := execSet(t, command, TemplateConfig{Contents: "{{ range services }}{{ .ID }}\n{{ end }}", Destination: filepath.Join(dir, "out"), ReloadSignal: "SIGUSR2"})
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ex := &Exec{Command: command, Log: log, signalReady: 300 * time.Millisecond}
	r := NewRenderer(log, nil, nil)
	r.Child = ex
	ctx, ran := runExec(t, ex, func(ctx context.Context) PassResult { return r.Pass(ctx, set, snapshot()) })
	w := r.Pass(ctx, set, snapshot(svc("a", nil, nil))).Worst()
	if w == nil || w.Step != StepReload || !errors.Is(w.Err, errSignalNotHandled) || !strings.Contains(w.Err.Error(), "which the command still runs") {
		t.Fatalf("worst = %+v; want the reload not sent, the files put back and not reloaded again", w)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "out")); string(got) != "" {
		t.Errorf("the destination holds %q, want the previous (empty) file", got)
	}
	select {
	case code := <-ran:
		t.Fatalf("the command ended (%d); log:\n%s", code, &logs)
	default:
	}
}

// runExec prepares ex and runs it until the test ends, with the result
// of first as its first pass, and waits for its command to start. It
// returns the context of the run and the channel of its exit status.
func runExec(t *testing.T, ex *Exec, first func(context.Context) PassResult) (context.Context, <-chan int) {
	t.Helper()
	if err := ex.Prepare(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran, done := make(chan int, 1), make(chan struct{})
	go func() {
		defer close(done)
		ran <- ex.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		ex.Close()
	})
	ex.Passed(first(ctx)) // the command starts
	for deadline := time.Now().Add(20 * time.Second); !ex.started(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the command did not start")
		}
	}
	return ctx, ran
}

// A command that reads its signals from a signalfd keeps them blocked,
// and catches none: one that keeps the reload signal blocked is sent it.
// Not parallel, as above.
func TestReloadSignalKeptBlockedIsSent(t *testing.T) {
	script := `use POSIX; sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGUSR2)); sleep 1000;`
	var logs bytes.Buffer
	ex := &Exec{Command: CommandLine{"perl", "-e", script}, Log: slog.New(slog.NewTextHandler(&logs, nil)), signalReady: 10 * time.Second}
	ctx, ran := runExec(t, ex, func(context.Context) PassResult { return PassResult{} })
	if skipped, err := ex.Reload(ctx, syscall.SIGUSR2); skipped != "" || err != nil {
		t.Fatalf("reload: skipped %q, %v; log:\n%s", skipped, err, &logs)
	}
	select {
	case code := <-ran:
		t.Fatalf("the command ended (%d); log:\n%s", code, &logs)
	default:
	}
}

// A command that ignores the reload signal has not set its handler yet
// (HAProxy's master ignores SIGUSR2 for a moment at its start, after it
// has read its configuration, before it catches it): a signal sent then is
// lost, and the command would go on with the files it read before the
// install. The reload waits until the command catches it. Here the command
// ignores it for its first 2 s, then catches it.
// Not parallel, as above.
func TestReloadSignalIgnoredIsNotSentYet(t *testing.T) {
	reloadTaken(t, func(got string) CommandLine {
		return CommandLine{"/bin/sh", "-c", `trap '' USR2; sleep 2; trap 'echo reloaded >> ` + got + `' USR2; while :; do sleep 0.05; done`}
	}, 10*time.Second)
}

// Nor is it sent while the command ignores it and keeps it blocked, as
// HAProxy's master does for a moment at its start: setting the signal
// ignored again discards it. Here the command ignores and blocks it for
// its first 2 s, ignores it again, then catches and unblocks it.
// Not parallel, as above.
func TestReloadSignalIgnoredAndBlockedIsNotSentYet(t *testing.T) {
	script := `use POSIX; my $s = POSIX::SigSet->new(SIGUSR2); $SIG{USR2} = "IGNORE"; sigprocmask(SIG_BLOCK, $s); sleep 2;
$SIG{USR2} = "IGNORE"; $SIG{USR2} = sub { open(my $f, ">>", $ARGV[0]); print $f "reloaded\n"; close $f }; sigprocmask(SIG_UNBLOCK, $s);
select(undef, undef, undef, 0.05) while 1;`
	reloadTaken(t, func(got string) CommandLine { return CommandLine{"perl", "-e", script, got} }, 10*time.Second)
}

// reloadTaken runs the command that command makes (its handler of
// SIGUSR2 writes "reloaded" to the file got) under an Exec, reloads it
// with SIGUSR2, waits up to within for the file to say so, and checks that
// the command lives on. It returns the Exec's log.
func reloadTaken(t *testing.T, command func(got string) CommandLine, within time.Duration) *bytes.Buffer {
	t.Helper()
	got := filepath.Join(t.TempDir(), "reloaded")
	logs := new(bytes.Buffer)
	ex := &Exec{Command: command(got), Log: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, ran := runExec(t, ex, func(context.Context) PassResult { return PassResult{} })
	if skipped, err := ex.Reload(ctx, syscall.SIGUSR2); skipped != "" || err != nil {
		t.Fatalf("reload: skipped %q, %v; log:\n%s", skipped, err, logs)
	}
	for deadline := time.Now().Add(within); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(got); strings.Contains(string(b), "reloaded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command did not take the reload; log:\n%s", logs)
		}
	}
	select {
	case code := <-ran:
		t.Fatalf("the command ended (%d) after the reload; log:\n%s", code, logs)
	default:
	}
	return logs
}
