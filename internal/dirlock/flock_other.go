//go:build !unix

package dirlock

import (
	"errors"
	"os"
)

// Without flock the lock is not taken: nothing is refused on these
// systems (Writ is built and tested on Linux and macOS).
var errWouldBlock = errors.New("would block")

func tryLock(*os.File) error { return nil }
func unlock(*os.File) error  { return nil }
