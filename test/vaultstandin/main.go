// Command vaultstandin answers the three Vault requests the supervisor makes to read a user's
// setup token (auth/token/lookup-self, sys/internal/ui/mounts/PATH, the KV v2 data read), for
// the VM guest, which has no room for a real Vault: a static binary, test/vm/e2e puts it in the
// payload as vault-standin. The real Vault is the host tier's (internal/vaulttest); this one
// only lets a guest see a token come from "Vault", with the version metadata KV v2 returns, so
// that the expiry horizon from created_time can be checked end to end.
//
//	vault-standin --listen 127.0.0.1:8200 --token-file F [--created RFC3339] [--version N]
//
// Every token is accepted (a non-renewable one without TTL, like a root token); the secret is
// the same at every path under secret/: {"setup_token": the content of --token-file}, version
// --version, written at --created, no custom_metadata. It prints one line per request, paths
// only. SIGTERM stops it.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() { os.Exit(run()) }

func run() int {
	listen := flag.String("listen", "127.0.0.1:8200", "address to listen on (keep it on loopback)")
	tokenFile := flag.String("token-file", "", "the setup token the secret holds (a file, so it is on no command line)")
	created := flag.String("created", "", "the version's created_time, RFC 3339 (default: now)")
	version := flag.Int("version", 1, "the secret's KV version")
	flag.Parse()
	b, err := os.ReadFile(*tokenFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vault-standin: --token-file: %v\n", err)
		return 1
	}
	token := strings.TrimSpace(string(b))
	if *created == "" {
		*created = time.Now().UTC().Format(time.RFC3339Nano)
	} else if _, err := time.Parse(time.RFC3339, *created); err != nil {
		fmt.Fprintf(os.Stderr, "vault-standin: --created: %v\n", err)
		return 1
	}
	answer := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/auth/token/lookup-self", func(w http.ResponseWriter, r *http.Request) {
		answer(w, map[string]any{"data": map[string]any{"policies": []string{"default"}, "renewable": false, "ttl": 0}})
	})
	mux.HandleFunc("GET /v1/sys/internal/ui/mounts/secret/", func(w http.ResponseWriter, r *http.Request) {
		answer(w, map[string]any{"data": map[string]any{"path": "secret/", "type": "kv", "options": map[string]any{"version": "2"}}})
	})
	mux.HandleFunc("GET /v1/secret/data/", func(w http.ResponseWriter, r *http.Request) {
		answer(w, map[string]any{"data": map[string]any{
			"data": map[string]any{"setup_token": token},
			"metadata": map[string]any{"version": *version, "created_time": *created, "deletion_time": "",
				"destroyed": false, "custom_metadata": nil},
		}})
	})
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("vault-standin: %s %s\n", r.Method, r.URL.Path)
		mux.ServeHTTP(w, r)
	})
	fmt.Printf("vault-standin: listening on http://%s\n", *listen)
	if err := http.ListenAndServe(*listen, logged); err != nil {
		fmt.Fprintf(os.Stderr, "vault-standin: %v\n", err)
		return 1
	}
	return 0
}
