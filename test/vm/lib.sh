#!/bin/bash
# Shared by the guest payloads (test/vm/scenarios, creds, life, soak, isolation, bench/vm/guest):
# installs the package (dpkg -i of the payload's t3-supervise.deb) and what an operator puts on
# a machine, and the helpers to drive the unit. Source it with P set to the payload directory.
# U, PORT and URL are alice's unit; the helpers read U, so `U=t3-supervise@bob.service serverpid`
# asks about bob's.
U=t3-supervise@alice.service
PORT=3773
URL=http://127.0.0.1:$PORT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }
info() { echo "INFO $*"; }
contains() { [[ "$1" == *"$2"* ]]; }
yes_if() { if "$@"; then echo yes; else echo no; fi; }
check() { # check NAME DETAIL CONDITION...
	local name=$1 detail=$2
	shift 2
	if "$@"; then pass "$name $detail"; else fail "$name $detail"; return 1; fi
}

# ---- install: the package, and what an operator puts on a machine ---------------------------
# install_deb DEB: installs the package as an operator does, `dpkg -i DEB`: the binary, the unit
# in /usr/lib/systemd/system, the catalog (systemd's dpkg trigger on /usr/lib/systemd/catalog
# rebuilds the catalog database), the man page and the docs; postinst does the daemon-reload.
# Checks that dpkg holds it as installed at DEB's version: a PASS line, or dpkg's output as INFO
# lines, a FAIL line and status 1. An upgrade is the same call with the newer package.
install_deb() {
	local deb=$1 want got out
	want=$(dpkg-deb --field "$deb" Version) || { fail "deb-install $deb is not a package"; return 1; }
	if ! out=$(dpkg -i "$deb" 2>&1); then
		echo "$out" | sed 's/^/INFO dpkg: /'
		fail "deb-install dpkg -i $deb (version $want) failed"
		return 1
	fi
	got=$(dpkg-query -W -f '${Status} ${Version}' t3-supervise 2>&1)
	check deb-install "dpkg -i $(basename "$(readlink -f "$deb")"): t3-supervise $got" \
		test "$got" = "install ok installed $want" || { echo "$out" | sed 's/^/INFO dpkg: /'; return 1; }
}

# setup_user NAME PORT: what an operator and the user put in place for t3-supervise@NAME: the
# user, the env file with the port, the agent (the stand-in claude) in ~/.local/bin as claude is
# in production, a Vault token file and a materialized setup token. No Vault in the guest: the
# supervisor falls back to the token materialized earlier (the fallback path, with its warning
# event); it reads the token file itself, as NAME. Sets TOKEN to NAME's setup token.
setup_user() {
	local name=$1 port=$2 home=/home/$1
	id "$name" >/dev/null 2>&1 || useradd --create-home --user-group --shell /bin/bash "$name"
	install -d -o "$name" -g "$name" "$home/.local" "$home/.local/bin" "$home/.config"
	install -d -m 0700 -o "$name" -g "$name" "$home/.config/claude-auth-sync"
	ln -sfn /usr/local/bin/standin "$home/.local/bin/claude"
	mkdir -p /etc/t3-serve
	printf 'T3_PORT=%s\nT3_STANDIN_CLAUDE=%s\n' "$port" "$home/.local/bin/claude" >"/etc/t3-serve/$name.env"
	TOKEN=sk-ant-oat01-VMTEST$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	echo "hvs.not-a-real-token" | install -m 0600 -o "$name" -g "$name" /dev/stdin "$home/.config/claude-auth-sync/vault-token"
	echo "CLAUDE_CODE_OAUTH_TOKEN=$TOKEN" | install -m 0600 -o "$name" -g "$name" /dev/stdin "$home/.config/claude-auth-sync/claude-oauth.env"
}

# install_payload: the package from the payload ($P/t3-supervise.deb), the test programs, and
# alice set up for t3-supervise@alice.service. Exits the script when the package does not
# install: nothing after it would test the package.
install_payload() {
	install_deb "$P/t3-supervise.deb" || exit 1
	install -m 0755 "$P/bin/standin" /usr/local/bin/standin
	install -m 0755 "$P/bin/prober" /usr/local/bin/prober
	ln -sf standin /usr/local/bin/t3
	setup_user alice $PORT
	token=$TOKEN
}

# ---- helpers --------------------------------------------------------------------------------
cgbase() { echo "/sys/fs/cgroup$(systemctl show -p ControlGroup --value $U)"; }

# start_unit ARGS...: the supervisor gets ARGS (limits scaled to this 2 GiB guest) and
# EXTRA_ENV, then start; systemctl start returns at READY=1, i.e. when t3 answers GET /.
# ARGS and EXTRA_ENV go in an environment file the drop-in names, read at every start
# (EnvironmentFile=; its assignments override Environment=, and an unbraced $T3S_ARGS in
# ExecStart= becomes as many arguments as it has words: systemd.exec(5), systemd.service(5)). So
# the drop-in stays the same from one start to the next, and the daemon-reload, which re-reads
# every unit and costs PID 1 seconds under emulation, runs only when the unit's drop-in
# directory differs from what the last start_unit had loaded: its first start, or a script's
# own drop-in added or removed since (creds, isolation, life). prepare_unit ARGS... is all of it
# but the start.
start_unit() {
	prepare_unit "$@"
	systemctl start $U
}
prepare_unit() {
	local d=/etc/systemd/system/$U.d env=/run/t3s-test/$U.env a now conf
	mkdir -p "$d" /run/t3s-test
	{
		echo "T3S_ARGS=\"$*\""
		for a in $EXTRA_ENV; do echo "$a"; done
	} >"$env"
	# Rewritten only when it differs: a newer mtime alone makes systemd warn that the unit
	# changed on disk.
	conf="[Service]
Environment=VAULT_ADDR=http://127.0.0.1:1 VAULT_MAX_RETRIES=0
EnvironmentFile=$env
ExecStart=
ExecStart=/usr/bin/t3-supervise --user %i --server-memory-low 64M --stop-timeout 5s \$T3S_ARGS -- serve --host 0.0.0.0 --port \${T3_PORT} --base-dir /home/%i/.t3"
	[ "$(cat "$d/test.conf" 2>/dev/null)" = "$conf" ] || echo "$conf" >"$d/test.conf"
	now=$(tail -v -n +1 -- "$d"/* 2>/dev/null)
	if [ "$now" != "$(cat "/run/t3s-test/$U.loaded" 2>/dev/null)" ]; then
		systemctl daemon-reload
		echo "$now" >"/run/t3s-test/$U.loaded"
	fi
	systemctl reset-failed $U 2>/dev/null
	SINCE=$(date '+%Y-%m-%d %H:%M:%S')
	sleep 1 # journalctl --since has one-second resolution
}
stop_unit() { systemctl stop $U; }
EXTRA_ENV=""

mainpid() { systemctl show -p MainPID --value $U; }
serverpid() { cat "$(cgbase)/workload/server/cgroup.procs" 2>/dev/null | head -1; }
nrestarts() { systemctl show -p NRestarts --value $U; }
# state_of PID sets STATE to the State letter of /proc/PID/status (proc(5)), empty when the
# process is gone. Builtins only, and a variable rather than $(...): a fork costs about 0.1 s of
# guest CPU under emulation, and the soak asks about 100 balloons a dozen times each.
state_of() {
	local l
	STATE=
	{ while IFS= read -r l; do
		[[ $l == State:* ]] || continue
		l=${l#State:}
		l=${l#"${l%%[![:space:]]*}"}
		STATE=${l:0:1}
		break
	done; } 2>/dev/null <"/proc/$1/status" || :
}
alive() { state_of "$1"; [ -n "$STATE" ] && [ "$STATE" != Z ]; }
api() { curl -fsS -X POST "$URL/_standin/$1"; }
leaves() { find "$(cgbase)/workload/agents" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l; }
# events KIND: the supervisor's journal entries of that kind since the unit was started; only
# EVENTS_USER's (T3_USER) when set, for a guest where other users' units run or ran.
EVENTS_USER=""
events() { journalctl -q --no-pager -o json --since "$SINCE" SYSLOG_IDENTIFIER=t3-supervise T3_EVENT="$1" ${EVENTS_USER:+T3_USER="$EVENTS_USER"}; }
# wait_for SECONDS COMMAND...: COMMAND until it succeeds, for at most about SECONDS. Under
# emulation every poll is CPU the guest's real work does not get (a `systemctl show` or a curl
# costs tens of milliseconds, a fork and exec a few: the vm-cpu line at the end of each guest),
# so the interval grows from 0.1 s to 0.5 s: a quick condition is still seen at once, a long
# wait polls twice a second (not less: the soak waits 100 times for a balloon that dies within
# seconds). The clock is bash's EPOCHSECONDS rather than a date(1) per poll, and the pause a
# read -t on a FIFO nobody writes (open for reading and writing, so it never sees end of file:
# fifo(7)) rather than a sleep(1) per poll.
WAIT_FIFO=/run/t3s-wait.fifo
[ -p $WAIT_FIFO ] || mkfifo $WAIT_FIFO
wait_for() {
	local end=$((EPOCHSECONDS + $1)) tenths=1 fd rc=0
	shift
	exec {fd}<>$WAIT_FIFO
	until "$@"; do
		[ "$EPOCHSECONDS" -ge "$end" ] && { rc=1; break; }
		read -r -t "$((tenths / 10)).$((tenths % 10))" -u "$fd" || :
		tenths=$((tenths * 2 > 5 ? 5 : tenths * 2))
	done
	exec {fd}>&-
	return $rc
}
# Conditions for wait_for, as functions: a `sh -c` per poll is one more process under emulation.
no_proc() { ! [ -d "/proc/$1" ]; }
ended() { state_of "$1"; [ -z "$STATE" ] || [ "$STATE" = Z ]; } # gone, or a zombie
prop_is() { [ "$(systemctl show -p "$1" --value "${3:-$U}")" = "$2" ]; } # prop_is PROPERTY VALUE [UNIT]
restarted() { [ "$(nrestarts)" = "$1" ] && systemctl is-active -q $U; } # restarted N: NRestarts=N, active
leaves_at_least() { [ "$(leaves)" -ge "$1" ]; }
spawn_agents() { # 8 agents: 6 through PATH (the shim), 2 by absolute path (the watch)
	api "agents?n=8&abs=2" >/dev/null
	wait_for 20 leaves_at_least 8
}
agents_alive() {
	local n
	n=$(curl -fsS "$URL/_standin/agents" | jq '[.[] | select(.alive)] | length')
	[ "$n" = 8 ]
}
PROBER_OUT=/tmp/prober.out
start_prober() {
	prober --url "$URL/" --interval 50ms --timeout 5s --duration 10m >"$PROBER_OUT" 2>&1 &
	PROBER=$!
}
# stop_prober: ends the prober and leaves its PROBE line in $PROBE. Not to be run as $(...): in
# that subshell the prober is no child, `wait` returns at once (bash(1): "pid is not a child of
# this shell"), and the line was read before the prober had written it (seen in the claude
# guest on a loaded host: an empty PROBE).
stop_prober() {
	kill -TERM "$PROBER"
	wait "$PROBER" 2>/dev/null || true
	PROBE=$(grep '^PROBE' "$PROBER_OUT" || true)
}

