//go:build linux

// Package claudetest gives tests the real parts T3 Code runs its agents with: the Claude Code CLI
// (cached by test/claude/fetch, named by T3S_CLAUDE_BIN) and the SDK stand-in of `t3 serve`
// (test/sdk/server.mjs on Node, with the real Agent SDK in the node_modules that test/sdk/install
// caches, named by T3S_SDK_DIR). test/host/run installs both and sets the variables.
//
// Without them, Need fails the test when T3S_REQUIRE asks for the "claude" tier and skips it
// otherwise, like every tier of internal/testenv.
//
// The caches live in root's home, which other users cannot enter, while the supervisor runs t3
// and its agents as an unprivileged user. Need therefore stages the parts once per test process
// in a fresh world-readable directory: the CLI and node_modules as hard links (no 370 MB copy;
// a copy only where the cache is on another filesystem), server.mjs copied from the checkout.
// Nothing there belongs to the test user, so a test that hands its own files to that user
// (chown) cannot hand over the cache's inodes: never stage into such a directory.
package claudetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"t3-supervise/internal/testenv"
)

// The variables test/host/run sets, and the versions test/claude/fetch and test/sdk pin.
const (
	EnvBin     = "T3S_CLAUDE_BIN"
	EnvSDK     = "T3S_SDK_DIR"
	Version    = "2.1.328" // Claude Code
	SDKVersion = "0.3.328" // @anthropic-ai/claude-agent-sdk
)

// Parts are the staged parts.
type Parts struct {
	Dir    string // the staging directory: root's, mode 0755
	Bin    string // Dir/bin, holding claude and t3: put it on t3's PATH
	Claude string // Dir/bin/claude, the real CLI
	// T3 is Dir/bin/t3, a symlink to Dir/sdk/server.mjs (`#!/usr/bin/env node`): `t3 serve
	// --port P ...` runs the SDK stand-in, a Node process as the real t3 is.
	T3 string
}

var staged struct {
	once    sync.Once
	parts   Parts
	missing string
	err     error
}

// Need returns the staged parts, or ends t (see the package doc).
func Need(t testing.TB) Parts {
	t.Helper()
	staged.once.Do(func() { staged.parts, staged.missing, staged.err = stage() })
	testenv.Need(t, testenv.Claude, staged.missing)
	if staged.err != nil {
		t.Fatalf("claudetest: staging the real claude and the SDK stand-in: %v", staged.err)
	}
	return staged.parts
}

// Remove deletes the staging directory; TestMain calls it once the tests are done.
func Remove() {
	if staged.parts.Dir != "" {
		os.RemoveAll(staged.parts.Dir)
	}
}

// stage checks the parts (missing says what is absent) and lays them out.
func stage() (Parts, string, error) {
	claude, sdk := os.Getenv(EnvBin), os.Getenv(EnvSDK)
	if claude == "" || sdk == "" {
		return Parts{}, EnvBin + " or " + EnvSDK + " is not set (test/claude/fetch and test/sdk/install print them)", nil
	}
	if out, err := exec.Command(claude, "--version").Output(); err != nil || strings.TrimSpace(string(out)) != Version+" (Claude Code)" {
		return Parts{}, fmt.Sprintf("%s=%s does not say it is Claude Code %s (%q, %v)", EnvBin, claude, Version, out, err), nil
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return Parts{}, "node is not on PATH (apt-get install nodejs)", nil
	}
	var pkg struct{ Version string }
	manifest := filepath.Join(sdk, "node_modules", "@anthropic-ai", "claude-agent-sdk", "package.json")
	if b, err := os.ReadFile(manifest); err != nil || json.Unmarshal(b, &pkg) != nil || pkg.Version != SDKVersion {
		return Parts{}, fmt.Sprintf("%s: no Agent SDK %s (%v)", manifest, SDKVersion, err), nil
	}
	if out, err := exec.Command(node, "-e", "const [a,b]=process.versions.node.split('.').map(Number); process.exit(a>18||(a===18&&b>=14)?0:1)").CombinedOutput(); err != nil {
		return Parts{}, fmt.Sprintf("%s is older than the Agent SDK's minimum, Node 18.14 (%s)", node, out), nil
	}
	server, err := findServer()
	if err != nil {
		return Parts{}, "", err
	}

	dir, err := os.MkdirTemp("", "t3s-claude-")
	if err != nil {
		return Parts{}, "", err
	}
	p := Parts{Dir: dir, Bin: filepath.Join(dir, "bin")}
	p.Claude, p.T3 = filepath.Join(p.Bin, "claude"), filepath.Join(p.Bin, "t3")
	err = errors.Join(
		os.Chmod(dir, 0o755),
		os.Mkdir(p.Bin, 0o755),
		os.Mkdir(filepath.Join(dir, "sdk"), 0o755),
	)
	if err == nil {
		err = linkOrCopy(claude, p.Claude)
	}
	if err == nil {
		err = copyFile(server, filepath.Join(dir, "sdk", "server.mjs"), 0o755)
	}
	if err == nil {
		err = os.Symlink("../sdk/server.mjs", p.T3)
	}
	if err == nil {
		err = linkTree(filepath.Join(sdk, "node_modules"), filepath.Join(dir, "sdk", "node_modules"))
	}
	if err != nil {
		os.RemoveAll(dir)
		return Parts{}, "", err
	}
	return p, "", nil
}

// findServer finds test/sdk/server.mjs in the checkout: the module root is the first directory
// above the test's working directory (its package) holding go.mod.
func findServer() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "test", "sdk", "server.mjs"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// linkTree recreates the tree from as directories, symlinks and hard links of its files.
func linkTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		default:
			return linkOrCopy(path, dst)
		}
	})
}

func linkOrCopy(from, to string) error {
	if err := os.Link(from, to); err == nil {
		return nil
	}
	st, err := os.Stat(from)
	if err != nil {
		return err
	}
	return copyFile(from, to, st.Mode().Perm())
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
