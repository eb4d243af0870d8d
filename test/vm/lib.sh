#!/bin/bash
# Shared by the guest payloads (test/vm/scenarios, test/vm/soak, bench/vm/guest): installs what
# `make install` and an operator put on a machine, and the helpers to drive the unit. Source it
# with P set to the payload directory.
U=t3-supervise@alice.service
PORT=3773
URL=http://127.0.0.1:$PORT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }
info() { echo "INFO $*"; }
contains() { [[ "$1" == *"$2"* ]]; }
check() { # check NAME DETAIL CONDITION...
	local name=$1 detail=$2
	shift 2
	if "$@"; then pass "$name $detail"; else fail "$name $detail"; return 1; fi
}

# ---- install: what `make install` and an operator would put on a machine ------------------
install_payload() {
	install -m 0755 "$P/bin/t3-supervise" /usr/bin/t3-supervise # where the package puts it
	install -m 0755 "$P/bin/standin" /usr/local/bin/standin
	install -m 0755 "$P/bin/prober" /usr/local/bin/prober
	ln -sf standin /usr/local/bin/t3
	install -m 0644 "$P/units/t3-supervise@.service" /etc/systemd/system/t3-supervise@.service
	install -D -m 0644 "$P/units/t3-supervise.catalog" /usr/local/lib/systemd/catalog/t3-supervise.catalog
	journalctl --update-catalog
	# The real agent lives in the user's ~/.local/bin, as claude does in production.
	install -d -o alice -g alice /home/alice/.local/bin /home/alice/.config
	install -d -m 0700 -o alice -g alice /home/alice/.config/claude-auth-sync
	ln -sf /usr/local/bin/standin /home/alice/.local/bin/claude
	mkdir -p /etc/t3-serve
	cat >/etc/t3-serve/alice.env <<EOF
T3_PORT=$PORT
T3_STANDIN_CLAUDE=/home/alice/.local/bin/claude
EOF
	# No Vault in the guest: the supervisor falls back to the token materialized earlier (the
	# fallback path, with its warning event). The supervisor reads the token file itself, as alice.
	token=sk-ant-oat01-VMTEST$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	echo "hvs.not-a-real-token" | install -m 0600 -o alice -g alice /dev/stdin /home/alice/.config/claude-auth-sync/vault-token
	echo "CLAUDE_CODE_OAUTH_TOKEN=$token" | install -m 0600 -o alice -g alice /dev/stdin /home/alice/.config/claude-auth-sync/claude-oauth.env
	systemctl daemon-reload
}

# ---- helpers --------------------------------------------------------------------------------
cgbase() { echo "/sys/fs/cgroup$(systemctl show -p ControlGroup --value $U)"; }

# start_unit ARGS...: a drop-in gives the supervisor ARGS (limits scaled to this 2 GiB guest),
# then start; systemctl start returns at READY=1, i.e. when t3 answers GET /.
start_unit() {
	mkdir -p /etc/systemd/system/$U.d
	cat >/etc/systemd/system/$U.d/test.conf <<EOF
[Service]
Environment=VAULT_ADDR=http://127.0.0.1:1 VAULT_MAX_RETRIES=0 $EXTRA_ENV
ExecStart=
ExecStart=/usr/bin/t3-supervise --user %i --server-memory-low 64M --stop-timeout 5s $* -- serve --host 0.0.0.0 --port \${T3_PORT} --base-dir /home/%i/.t3
EOF
	systemctl daemon-reload
	systemctl reset-failed $U 2>/dev/null
	SINCE=$(date '+%Y-%m-%d %H:%M:%S')
	sleep 1 # journalctl --since has one-second resolution
	systemctl start $U
}
stop_unit() { systemctl stop $U; }
EXTRA_ENV=""

mainpid() { systemctl show -p MainPID --value $U; }
serverpid() { cat "$(cgbase)/workload/server/cgroup.procs" 2>/dev/null | head -1; }
nrestarts() { systemctl show -p NRestarts --value $U; }
alive() { [ -d /proc/$1 ] && ! grep -q '^State:.*Z' /proc/$1/status 2>/dev/null; }
api() { curl -fsS -X POST "$URL/_standin/$1"; }
leaves() { find "$(cgbase)/workload/agents" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l; }
# events KIND: the supervisor's journal entries of that kind since the unit was started.
events() { journalctl -q --no-pager -o json --since "$SINCE" SYSLOG_IDENTIFIER=t3-supervise T3_EVENT="$1"; }
wait_for() { # wait_for SECONDS COMMAND...
	local end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.2
	done
}
spawn_agents() { # 8 agents: 6 through PATH (the shim), 2 by absolute path (the watch)
	api "agents?n=8&abs=2" >/dev/null
	wait_for 20 test "$(leaves)" -ge 8
}
agents_alive() {
	local n
	n=$(curl -fsS "$URL/_standin/agents" | jq '[.[] | select(.alive)] | length')
	[ "$n" = 8 ]
}
start_prober() {
	prober --url "$URL/" --interval 50ms --timeout 5s --duration 10m >/tmp/prober.out 2>&1 &
	PROBER=$!
}
stop_prober() {
	kill -TERM "$PROBER"
	wait "$PROBER" 2>/dev/null
	grep '^PROBE' /tmp/prober.out
}

