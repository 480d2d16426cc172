// Package dirlock keeps one process at a time working in a directory: an
// advisory lock on a file inside it, which the operating system releases
// when the process ends, however it ends (a crash or kill -9 leaves no
// stale lock to clean up). The file also says who holds it, so that a
// refused second process can name the first.
package dirlock
