package dirlock

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSecondHolderRefusedAndNamed(t *testing.T) {
	dir := t.TempDir()
	first, err := Acquire(dir, "serve.lock", "nats://127.0.0.1:4222")
	require.NoError(t, err)

	_, err = Acquire(dir, "serve.lock", "other")
	require.ErrorIs(t, err, ErrHeld)
	var held *HeldError
	require.ErrorAs(t, err, &held)
	require.Equal(t, os.Getpid(), held.Holder.PID)
	require.Equal(t, "nats://127.0.0.1:4222", held.Holder.Note)
	require.Contains(t, err.Error(), "nats://127.0.0.1:4222")

	require.NoError(t, first.Release())
	again, err := Acquire(dir, "serve.lock", "")
	require.NoError(t, err, "a released lock can be taken again")
	require.NoError(t, again.Release())
}

// The lock goes with its process, however it ends: a holder killed with
// SIGKILL leaves nothing to clean up.
func TestReleasedWhenHolderIsKilled(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	if dir := os.Getenv("DIRLOCK_HOLD"); dir != "" {
		if _, err := Acquire(dir, "serve.lock", "child"); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("held\n")
		time.Sleep(time.Minute) // killed by the parent long before
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReleasedWhenHolderIsKilled$")
	cmd.Env = append(os.Environ(), "DIRLOCK_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "held\n", line)

	_, err = Acquire(dir, "serve.lock", "parent")
	var held *HeldError
	require.ErrorAs(t, err, &held)
	require.Equal(t, cmd.Process.Pid, held.Holder.PID, "the refusal names the child")
	require.Equal(t, "child", held.Holder.Note)

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	l, err := Acquire(dir, "serve.lock", "parent")
	require.NoError(t, err, "the killed holder's lock is gone with it")
	require.NoError(t, l.Release())
}

func TestUnreadableHolderStillRefuses(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, "serve.lock", "")
	require.NoError(t, err)
	defer l.Release()
	require.NoError(t, os.WriteFile(dir+"/serve.lock", []byte("garbage"), 0o600))
	_, err = Acquire(dir, "serve.lock", "")
	var held *HeldError
	require.True(t, errors.As(err, &held))
	require.Zero(t, held.Holder.PID)
	require.Contains(t, err.Error(), "held by another process")
}
