//go:build !linux

package supervise

import "errors"

var errNotLinux = errors.New("process-tree supervision needs Linux (child subreapers, /proc)")

// SetSubreaper needs Linux's prctl(PR_SET_CHILD_SUBREAPER).
func SetSubreaper() error { return errNotLinux }

// ReapOrphans has nothing to reap without a subreaper.
func ReapOrphans(keep int) []int { return nil }

// Descendants needs /proc.
func Descendants(root int) []int { return nil }

type treeKiller struct{ root int }

func (treeKiller) KillAll() error { return errNotLinux }
