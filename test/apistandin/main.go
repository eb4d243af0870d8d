// Command apistandin serves the Anthropic Messages API stand-in (package test/anthropicapi) on
// loopback, for a real Claude Code CLI pointed at it with ANTHROPIC_BASE_URL: in the VM guest,
// where the Go tests do not run, and by hand. A static binary (`make tools` builds it as
// bin/api-standin).
//
//	api-standin [--listen 127.0.0.1:0] [--addr-file F] [--record F] [--command CMD] [--reply TEXT] [--no-streaming]
//
// It prints `api-standin: listening on http://ADDR` once it listens (and writes that URL to
// --addr-file), then one line per request. --record appends every request as one JSON object
// per line, with the Authorization and x-api-key headers as fingerprints only
// ("Bearer sha256:<first 12 hex digits of the SHA-256 of the whole header value>"): compare
// them with the fingerprint of what you expect, never a token on disk. SIGTERM or SIGINT stops
// it with status 0.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"t3-supervise/test/anthropicapi"
)

func main() { os.Exit(run()) }

func run() int {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (keep it on loopback)")
	addrFile := flag.String("addr-file", "", "write the base URL here once listening")
	record := flag.String("record", "", "append every request here as a JSON line (headers as fingerprints)")
	var script anthropicapi.Script
	flag.StringVar(&script.Command, "command", "", "the Bash command of the scripted turn (default: answer with text only)")
	flag.StringVar(&script.Reply, "reply", "done", "the text of every final answer")
	flag.BoolVar(&script.NoStreaming, "no-streaming", false, "refuse streaming requests (404), so the CLI falls back to non-streaming ones")
	flag.Parse()

	var out *os.File
	if *record != "" {
		f, err := os.OpenFile(*record, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "api-standin: --record: %v\n", err)
			return 1
		}
		defer f.Close()
		out = f
	}
	srv := anthropicapi.New(script)
	var mu sync.Mutex
	srv.OnRequest = func(r anthropicapi.Request) {
		r.Authorization, r.APIKey = anthropicapi.Fingerprint(r.Authorization), anthropicapi.Fingerprint(r.APIKey)
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf("api-standin: %s %s stream=%v authorization=%q x-api-key=%q -> %d %s\n",
			r.Method, r.Path, r.Stream, r.Authorization, r.APIKey, r.Status, r.Answer)
		if out != nil {
			b, _ := json.Marshal(r)
			out.Write(append(b, '\n'))
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "api-standin: --listen: %v\n", err)
		return 1
	}
	url := "http://" + ln.Addr().String()
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(url+"\n"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "api-standin: --addr-file: %v\n", err)
			return 1
		}
	}
	fmt.Printf("api-standin: listening on %s\n", url)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- http.Serve(ln, srv) }()
	select {
	case <-sigs:
		return 0
	case err := <-errc:
		fmt.Fprintf(os.Stderr, "api-standin: %v\n", err)
		return 1
	}
}
