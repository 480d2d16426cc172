//go:build unix

package fedscale_test

import (
	"syscall"
	"time"
)

// cpuUsed is the CPU time this process has used so far (user and system).
func cpuUsed() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
