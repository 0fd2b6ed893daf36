#!/usr/bin/env bash
# loadtest/compare.sh — the same load, one peer after another, on this machine:
#
#   HTTP/HTTPS  direct to the local origin (the ceiling), through Squid, through Cordon
#   DNS         the origin's authoritative server (the ceiling), through Unbound, through Cordon
#
# and the ratios Cordon/peer for throughput and p99 latency, the RSS of each
# peer, and every raw output under loadtest/results/<time>/ (gitignored).
#
#   loadtest/compare.sh                         # everything, 10 s per run
#   DURATION=30s CONNECTIONS=200 loadtest/compare.sh
#   PEERS="direct squid" SUITES="http https" loadtest/compare.sh
#   PROFILE=1 PEERS=cordon loadtest/compare.sh   # + CPU profiles: go tool pprof -top loadtest/results/<time>/cpu-http-cordon.1.pprof
#
# How URL hosts reach the loopback origin: the URL and name files carry
# real-looking names (www.google.com:18080/1k). loadtest/traffic/hosts maps
# every URL host to 127.0.0.1 (/etc/hosts format, written by mktraffic with
# urls.txt): Squid reads it as hosts_file, and Cordon's proxy must read it too
# (loadtest/cordon-bench.yaml, owned by cmd/cordon: proxy hosts_file:
# loadtest/traffic/hosts, allow_private_destinations: [127.0.0.0/8]). The
# origin's DNS server (127.0.0.1:15353) answers every name with 127.0.0.1:
# Unbound forwards "." to it, and Cordon's DNS filter must use it as its
# upstream and load the same blocklist (see BLOCK_FEEDS below).
#
# Every run is bounded in time (timeout), every peer is stopped by its PID.
set -euo pipefail

# ---- knobs (environment overrides) --------------------------------------
CORDON_CMD=${CORDON_CMD:-"go run ./cmd/cordon serve --config loadtest/cordon-bench.yaml"}
CORDON_PROXY=${CORDON_PROXY:-127.0.0.1:3128}
CORDON_DNS=${CORDON_DNS:-127.0.0.1:5353}
CORDON_START_TIMEOUT=${CORDON_START_TIMEOUT:-180}   # seconds; go run compiles first
CORDON_ADMIN=${CORDON_ADMIN:-127.0.0.1:8080}
PROFILE=${PROFILE:-0}           # 1: CPU profile of Cordon during each of its runs, heap after (needs admin.pprof: true)
LOADTEST=${LOADTEST:-}          # a `loadtest` binary or "cordon loadtest"; default: built from ./loadtest/cmd/loadtest
DURATION=${DURATION:-10s}
REPEAT=${REPEAT:-1}             # runs per measurement; the one with the median throughput is compared
INTERLEAVE=${INTERLEAVE:-1}     # 1: alternate peers run by run (A B C A B C …); 0: all runs of one peer, then the next
CONNECTIONS=${CONNECTIONS:-100}
RATE=${RATE:-0}                 # > 0 adds an open-loop HTTP run (1 KiB URLs only) at this many requests/s per peer
DNS_CONCURRENCY=${DNS_CONCURRENCY:-50}
HOT=${HOT:-1000}                # names in the cached ("hot") DNS run
PEERS=${PEERS:-"direct squid unbound cordon"}
SUITES=${SUITES:-"http https dns"}
URLS=${URLS:-loadtest/traffic/urls.txt}
HOSTS=${HOSTS:-loadtest/traffic/hosts}     # URL hosts -> 127.0.0.1, for the proxies' name resolution
NAMES=${NAMES:-loadtest/traffic/names.txt}
# Lists of blocked names (hosts format or one name per line; .gz read
# decompressed), relative to the repository root: by default the bundled
# copies of Block List Project ransomware, scam, phishing-nl and URLhaus.
BLOCK_FEEDS=${BLOCK_FEEDS:-"categorizer/bundled/blp-ransomware.gz categorizer/bundled/blp-scam.gz categorizer/bundled/blp-phishing.gz categorizer/bundled/urlhaus-hosts.gz"}
UNBOUND_BLOCK=${UNBOUND_BLOCK:-refuse}   # local-zone type for listed names
SQUID_ACCESS_LOG=${SQUID_ACCESS_LOG:-0}  # 1: Squid writes an access log (Cordon logs every request unless its config says otherwise)
SQUID_ADDR=${SQUID_ADDR:-127.0.0.1:13128}
UNBOUND_ADDR=${UNBOUND_ADDR:-127.0.0.1:15354}
ORIGIN_HTTP=${ORIGIN_HTTP:-127.0.0.1:18080}     # urls.txt lines get this port (--http-port)
ORIGIN_HTTPS=${ORIGIN_HTTPS:-127.0.0.1:18443}   # and this one with --https (--https-port)
ORIGIN_DNS=${ORIGIN_DNS:-127.0.0.1:15353}
INSTALL=${INSTALL:-1}           # 1: apt-get install missing squid/unbound/dnsperf/wrk when root

cd "$(dirname "$0")/.."
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=loadtest/results/$STAMP
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/cordon-compare.XXXXXX)
chmod 755 "$TMP"
PIDS=()

log() { printf '%s [load %s] %s\n' "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1 /proc/loadavg)" "$*" | tee -a "$OUT/compare.log" >&2; }

cleanup() {
	local p
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

secs() { # 10s -> 10, 2m -> 120
	local d=$1
	case $d in
	*ms) echo 1 ;; *s) echo "${d%s}" ;; *m) echo $((${d%m} * 60)) ;; *h) echo $((${d%h} * 3600)) ;; *) echo "$d" ;;
	esac
}
RUN_TIMEOUT=$(($(secs "$DURATION") + 60))

has_peer() { [[ " $PEERS " == *" $1 "* ]]; }
has_suite() { [[ " $SUITES " == *" $1 "* ]]; }

# ---- tools ----------------------------------------------------------------
ensure_tool() { # binary package
	command -v "$1" >/dev/null 2>&1 && return 0
	if [[ $INSTALL == 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		log "installing $2"
		timeout 600 apt-get install -y -qq "$2" >>"$OUT/apt.log" 2>&1 ||
			{ timeout 300 apt-get update -qq >>"$OUT/apt.log" 2>&1 && timeout 600 apt-get install -y -qq "$2" >>"$OUT/apt.log" 2>&1; } || true
	fi
	command -v "$1" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
	command -v "$1" >/dev/null 2>&1
}
has_peer squid && { ensure_tool squid squid || { log "squid missing: skipping it"; PEERS=${PEERS/squid/}; }; }
has_peer unbound && { ensure_tool unbound unbound || { log "unbound missing: skipping it"; PEERS=${PEERS/unbound/}; }; }
ensure_tool dnsperf dnsperf || log "dnsperf missing: no dnsperf cross-check"
ensure_tool wrk wrk || log "wrk missing: no wrk cross-check"
command -v jq >/dev/null || ensure_tool jq jq || { log "jq is required"; exit 1; }

if [[ -z $LOADTEST ]]; then
	timeout 300 go build -o "$TMP/loadtest" ./loadtest/cmd/loadtest
	LOADTEST=$TMP/loadtest
fi

# ---- helpers ----------------------------------------------------------------
wait_tcp() { # addr seconds
	local host=${1%:*} port=${1##*:} i
	for ((i = 0; i < $2 * 10; i++)); do
		(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

start_bg() { # name cmd... ; sets BG_PID; a new session so the whole tree can be stopped
	local name=$1
	shift
	setsid "$@" >"$OUT/$name.log" 2>&1 &
	BG_PID=$!
	PIDS+=("$BG_PID")
}

stop_pid() { # pid: TERM the session, then KILL
	local p=$1 i
	kill -0 "$p" 2>/dev/null || return 0
	kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

tree_pids() {
	local c
	echo "$1"
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree_pids "$c"; done
}

rss_of() { # pid -> "rss_kb hwm_kb" summed over the process tree, the go tool left out
	local p rss=0 hwm=0 r h
	for p in $(tree_pids "$1"); do
		[[ $(cat "/proc/$p/comm" 2>/dev/null) == go ]] && continue
		r=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || true)
		h=$(awk '/^VmHWM/{print $2}' "/proc/$p/status" 2>/dev/null || true)
		rss=$((rss + ${r:-0}))
		hwm=$((hwm + ${h:-0}))
	done
	echo "$rss $hwm"
}

record_rss() { # peer pid
	local v
	v=$(rss_of "$2")
	echo "{\"peer\":\"$1\",\"rss_kb\":${v% *},\"hwm_kb\":${v#* }}" >"$OUT/rss-$1.json"
	log "$1 RSS after load: $((${v% *} / 1024)) MiB (peak $((${v#* } / 1024)) MiB)"
}

# median_of out metric files...: copies the run with the median metric
# (rps, qps, or p99 for open-loop runs, whose throughput is the set rate) to out.
median_of() {
	local out=$1 metric=$2
	shift 2
	[[ $# -gt 0 ]] || return 1
	jq -s --arg m "$metric" 'sort_by(if $m == "p99" then .latency.p99_ms else .[$m] end) | .[(length - 1) / 2 | floor]' "$@" >"$out"
}

# profile_start peer suite run: with PROFILE=1, a CPU profile of Cordon
# over the run, from its admin listener (admin token: CORDON_ADMIN_TOKEN).
profile_start() {
	PROF_PID=
	[[ $PROFILE == 1 && $1 == cordon ]] || return 0
	curl -s --max-time $(($(secs "$DURATION") + 30)) -H "Authorization: Bearer $CORDON_ADMIN_TOKEN" \
		-o "$OUT/cpu-$2-cordon.$3.pprof" "http://$CORDON_ADMIN/debug/pprof/profile?seconds=$(secs "$DURATION")" &
	PROF_PID=$!
}
profile_end() {
	if [[ -n ${PROF_PID:-} ]]; then wait "$PROF_PID" || log "  cpu profile failed (admin.pprof on? token?)"; fi
	PROF_PID=
}

http_once() { # peer suite run args...: one HTTP load run
	local peer=$1 suite=$2 r=$3
	shift 3
	log "http: $suite via $peer (run $r/$REPEAT)"
	profile_start "$peer" "$suite" "$r"
	if timeout "$RUN_TIMEOUT" $LOADTEST http --urls "$URLS" --duration "$DURATION" --connections "$CONNECTIONS" \
		--http-port "${ORIGIN_HTTP##*:}" --https-port "${ORIGIN_HTTPS##*:}" --ca "$TMP/origin-ca.pem" --json "$@" \
		>"$OUT/$suite-$peer.$r.json" 2>"$OUT/$suite-$peer.$r.err"; then
		jq -r '"  \(.rps|floor) req/s  p50 \(.latency.p50_ms) ms  p99 \(.latency.p99_ms) ms  errors \([.errors[]]|add // 0)  missed \(.missed)  status \(.status)"' "$OUT/$suite-$peer.$r.json" | tee -a "$OUT/compare.log" >&2
	else
		log "  failed: $(tail -3 "$OUT/$suite-$peer.$r.err")"
		rm -f "$OUT/$suite-$peer.$r.json"
	fi
	profile_end
}

dns_once() { # peer server suite run args...: one DNS load run
	local peer=$1 server=$2 suite=$3 r=$4
	shift 4
	log "dns: $suite via $peer ($server, run $r/$REPEAT)"
	profile_start "$peer" "$suite" "$r"
	if timeout "$RUN_TIMEOUT" $LOADTEST dns --server "$server" --duration "$DURATION" --concurrency "$DNS_CONCURRENCY" \
		--json "$@" >"$OUT/$suite-$peer.$r.json" 2>"$OUT/$suite-$peer.$r.err"; then
		jq -r '"  \(.qps|floor) q/s  p50 \(.latency.p50_ms) ms  p99 \(.latency.p99_ms) ms  errors \([.errors[]]|add // 0)  rcodes \(.rcodes)"' "$OUT/$suite-$peer.$r.json" | tee -a "$OUT/compare.log" >&2
	else
		log "  failed: $(tail -3 "$OUT/$suite-$peer.$r.err")"
		rm -f "$OUT/$suite-$peer.$r.json"
	fi
	profile_end
}

# ---- inputs -------------------------------------------------------------------
log "results in $OUT; $(nproc) CPUs; $(uname -sr); $(go version | cut -d' ' -f3)"
{
	echo "date: $(date -u)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) x $(nproc)"
	echo "kernel: $(uname -sr)"
	echo "go: $(go version)"
	command -v squid >/dev/null && echo "squid: $(squid -v | head -1)"
	command -v unbound >/dev/null && echo "unbound: $(unbound -V | head -1)"
	command -v dnsperf >/dev/null && echo "dnsperf: $(dnsperf -h 2>&1 | grep -m1 -i version || true)"
	echo "cordon: $CORDON_CMD"
	echo "duration=$DURATION repeat=$REPEAT connections=$CONNECTIONS rate=$RATE dns_concurrency=$DNS_CONCURRENCY hot=$HOT"
	echo "load average at start: $(cat /proc/loadavg)"
} >"$OUT/machine.txt"

awk -v n="$HOT" '!/^[#;]/ && NF && c++ < n' "$NAMES" >"$TMP/hot.txt"
# The open-loop run measures proxy overhead on 1 KiB bodies only.
awk '!/^#/ && /\/1k$/' "$URLS" >"$TMP/urls-1k.txt"
# The blocklist, one name per line, from the same feeds as the traffic files.
for f in $BLOCK_FEEDS; do
	gzip -dcf "$f" | grep -v '^[#!]' | awk 'NF{n=$NF; sub(/\.$/,"",n); print tolower(n)}'
done | grep -E '^[a-z0-9_-]+(\.[a-z0-9_-]+)+$' | grep -vE '^[0-9.]+$' | sort -u >"$TMP/blocklist.txt"
shuf -n 5000 --random-source=<(yes) "$TMP/blocklist.txt" | sed 's/$/ A/' >"$TMP/blocked-names.txt"
log "blocklist: $(wc -l <"$TMP/blocklist.txt") names from $BLOCK_FEEDS"

# ---- origin -------------------------------------------------------------------
start_bg origin $LOADTEST origin --http $ORIGIN_HTTP --https $ORIGIN_HTTPS --dns $ORIGIN_DNS --ca-out "$TMP/origin-ca.pem"
ORIGIN_PID=$BG_PID
# A port another program holds would answer wait_tcp too: the origin must be alive and ready.
for ((i = 0; i < 150; i++)); do
	grep -q '^origin ready' "$OUT/origin.log" 2>/dev/null && break
	kill -0 "$ORIGIN_PID" 2>/dev/null || break
	sleep 0.1
done
grep -q '^origin ready' "$OUT/origin.log" || { log "origin did not start: $(cat "$OUT/origin.log")"; exit 1; }
for ((i = 0; i < 50; i++)); do [[ -s $TMP/origin-ca.pem ]] && break; sleep 0.1; done

# ---- peers ------------------------------------------------------------------------
# Every peer starts first and idles while the others are measured, so runs can
# alternate between peers (INTERLEAVE=1): when the machine's load drifts, it
# skews every peer alike instead of whichever ran last.
HTTP_PEERS=()
DNS_PEERS=()
declare -A PEER_PID HTTP_ARGS HTTPS_ARGS DNS_ADDR
if has_peer direct; then
	HTTP_PEERS+=(direct)
	HTTP_ARGS[direct]="--connect-to $ORIGIN_HTTP"
	HTTPS_ARGS[direct]="--connect-to $ORIGIN_HTTPS"
	DNS_PEERS+=(direct)
	DNS_ADDR[direct]=$ORIGIN_DNS
	PEER_PID[origin]=$ORIGIN_PID
fi

if has_peer squid && { has_suite http || has_suite https; }; then
	mkdir -p "$TMP/squid" && chmod 777 "$TMP/squid"
	cp "$HOSTS" "$TMP/squid/hosts"
	cat >"$TMP/squid/squid.conf" <<EOF
# Pure forward proxy, no cache; names come from hosts_file (all to the origin).
http_port $SQUID_ADDR
pid_filename $TMP/squid/squid.pid
cache_log $TMP/squid/cache.log
access_log $([[ $SQUID_ACCESS_LOG == 1 ]] && echo "stdio:$TMP/squid/access.log" || echo none)
cache deny all
cache_mem 0 MB
coredump_dir $TMP/squid
hosts_file $TMP/squid/hosts
acl SSL_ports port 443 ${ORIGIN_HTTPS##*:}
acl Safe_ports port 80 443 ${ORIGIN_HTTP##*:} ${ORIGIN_HTTPS##*:}
acl CONNECT method CONNECT
http_access deny !Safe_ports
http_access deny CONNECT !SSL_ports
http_access allow localhost
http_access deny all
forwarded_for delete
shutdown_lifetime 1 seconds
max_filedescriptors $(ulimit -n)
EOF
	cp "$TMP/squid/squid.conf" "$OUT/squid.conf"
	start_bg squid squid -N -f "$TMP/squid/squid.conf"
	if wait_tcp $SQUID_ADDR 30 && sleep 0.5 && kill -0 "$BG_PID" 2>/dev/null; then
		PEER_PID[squid]=$BG_PID
		HTTP_PEERS+=(squid)
		HTTP_ARGS[squid]="--proxy $SQUID_ADDR"
		HTTPS_ARGS[squid]="--proxy $SQUID_ADDR"
	else
		log "squid did not start: $(tail -5 "$OUT/squid.log")"
		stop_pid "$BG_PID"
	fi
fi

if has_peer unbound && has_suite dns; then
	mkdir -p "$TMP/unbound"
	awk -v t="$UNBOUND_BLOCK" '{print "local-zone: \"" $1 ".\" " t}' "$TMP/blocklist.txt" >"$TMP/unbound/blocklist.conf"
	cat >"$TMP/unbound/unbound.conf" <<EOF
server:
  interface: ${UNBOUND_ADDR%:*}
  port: ${UNBOUND_ADDR##*:}
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$TMP/unbound"
  pidfile: "$TMP/unbound/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: $(nproc)
  so-reuseport: yes
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  qname-minimisation: no
  include: "$TMP/unbound/blocklist.conf"
forward-zone:
  name: "."
  forward-addr: ${ORIGIN_DNS%:*}@${ORIGIN_DNS##*:}
EOF
	cp "$TMP/unbound/unbound.conf" "$OUT/unbound.conf"
	start_bg unbound unbound -d -c "$TMP/unbound/unbound.conf"
	if wait_tcp $UNBOUND_ADDR 120 && kill -0 "$BG_PID" 2>/dev/null; then
		PEER_PID[unbound]=$BG_PID
		DNS_PEERS+=(unbound)
		DNS_ADDR[unbound]=$UNBOUND_ADDR
	else
		log "unbound did not start: $(tail -5 "$OUT/unbound.log")"
		stop_pid "$BG_PID"
	fi
fi

if has_peer cordon; then
	if [[ $PROFILE == 1 && -z ${CORDON_ADMIN_TOKEN:-} ]]; then
		CORDON_ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
		export CORDON_ADMIN_TOKEN # Cordon takes its first admin token from it
	fi
	log "starting cordon: $CORDON_CMD"
	# shellcheck disable=SC2086 # CORDON_CMD is a command line
	start_bg cordon $CORDON_CMD
	if wait_tcp "$CORDON_PROXY" "$CORDON_START_TIMEOUT" && kill -0 "$BG_PID" 2>/dev/null; then
		PEER_PID[cordon]=$BG_PID
		HTTP_PEERS+=(cordon)
		HTTP_ARGS[cordon]="--proxy $CORDON_PROXY"
		HTTPS_ARGS[cordon]="--proxy $CORDON_PROXY"
		if wait_tcp "$CORDON_DNS" 10; then
			DNS_PEERS+=(cordon)
			DNS_ADDR[cordon]=$CORDON_DNS
		else
			log "cordon DNS not listening on $CORDON_DNS"
		fi
	else
		log "cordon did not start within ${CORDON_START_TIMEOUT}s: $(tail -5 "$OUT/cordon.log")"
		stop_pid "$BG_PID"
	fi
fi
log "HTTP peers: ${HTTP_PEERS[*]:-none}; DNS peers: ${DNS_PEERS[*]:-none}; interleave=$INTERLEAVE"

# ---- load -----------------------------------------------------------------------------
HTTP_SUITES=()
has_suite http && HTTP_SUITES+=(http)
has_suite https && HTTP_SUITES+=(https)
[[ $RATE != 0 ]] && has_suite http && HTTP_SUITES+=(http-open)
DNS_SUITES=()
has_suite dns && DNS_SUITES=(dns-hot dns-mixed dns-blocked dns-uncached)

http_run() { # peer suite run
	# shellcheck disable=SC2086 # the peer's arguments are words
	case $2 in
	http) http_once "$1" "$2" "$3" ${HTTP_ARGS[$1]} ;;
	https) http_once "$1" "$2" "$3" --https ${HTTPS_ARGS[$1]} ;;
	http-open) http_once "$1" "$2" "$3" --rate "$RATE" --urls "$TMP/urls-1k.txt" ${HTTP_ARGS[$1]} ;;
	esac
}
dns_run() { # peer suite run
	local addr=${DNS_ADDR[$1]}
	case $2 in
	dns-hot) dns_once "$1" "$addr" "$2" "$3" --names "$TMP/hot.txt" ;;
	dns-mixed) dns_once "$1" "$addr" "$2" "$3" --names "$NAMES" ;;
	dns-blocked) dns_once "$1" "$addr" "$2" "$3" --names "$TMP/blocked-names.txt" ;;
	dns-uncached) dns_once "$1" "$addr" "$2" "$3" --names "$NAMES" --unique ;;
	esac
}
# each http|dns suites... -- peers...: every (suite, run, peer), interleaved or peer by peer.
each() {
	local kind=$1 s r p suites=() peers=()
	shift
	while [[ $# -gt 0 && $1 != -- ]]; do suites+=("$1"); shift; done
	[[ $# -gt 0 ]] && shift
	peers=("$@")
	[[ ${#suites[@]} -gt 0 && ${#peers[@]} -gt 0 ]] || return 0
	if [[ $INTERLEAVE == 1 ]]; then
		for s in "${suites[@]}"; do
			for ((r = 1; r <= REPEAT; r++)); do
				for p in "${peers[@]}"; do "${kind}_run" "$p" "$s" "$r"; done
			done
		done
	else
		for p in "${peers[@]}"; do
			for s in "${suites[@]}"; do
				for ((r = 1; r <= REPEAT; r++)); do "${kind}_run" "$p" "$s" "$r"; done
			done
		done
	fi
}

each http "${HTTP_SUITES[@]}" -- "${HTTP_PEERS[@]}"
if has_peer direct && has_suite http && command -v wrk >/dev/null; then
	timeout "$RUN_TIMEOUT" wrk -t 2 -c "$CONNECTIONS" -d "$DURATION" --latency "http://$ORIGIN_HTTP/1k" >"$OUT/wrk-direct.txt" 2>&1 || true
	log "wrk cross-check (direct, /1k only): $(awk '/Requests\/sec/{print $2 " req/s"}' "$OUT/wrk-direct.txt")"
fi

if [[ ${#DNS_SUITES[@]} -gt 0 ]]; then
	# Warm every cache with one pass of the hot set, then measure.
	for p in "${DNS_PEERS[@]}"; do
		timeout "$RUN_TIMEOUT" $LOADTEST dns --server "${DNS_ADDR[$p]}" --names "$TMP/hot.txt" --queries "$HOT" --concurrency 10 >/dev/null 2>&1 || true
	done
	each dns "${DNS_SUITES[@]}" -- "${DNS_PEERS[@]}"
	if command -v dnsperf >/dev/null; then
		for p in "${DNS_PEERS[@]}"; do
			addr=${DNS_ADDR[$p]}
			timeout "$RUN_TIMEOUT" dnsperf -s "${addr%:*}" -p "${addr##*:}" -d "$TMP/hot.txt" -l "$(secs "$DURATION")" -c 4 -q "$DNS_CONCURRENCY" \
				>"$OUT/dnsperf-hot-$p.txt" 2>&1 || true
			log "dnsperf cross-check, hot set via $p: $(awk '/Queries per second/{print $4 " q/s"}' "$OUT/dnsperf-hot-$p.txt")"
		done
	fi
fi

# ---- memory, profiles, stop -------------------------------------------------------------
for p in "${!PEER_PID[@]}"; do record_rss "$p" "${PEER_PID[$p]}"; done
if [[ $PROFILE == 1 && -n ${PEER_PID[cordon]:-} ]]; then
	curl -s --max-time 30 -H "Authorization: Bearer $CORDON_ADMIN_TOKEN" -o "$OUT/heap-cordon.pprof" "http://$CORDON_ADMIN/debug/pprof/heap" ||
		log "heap profile failed"
fi
for p in "${!PEER_PID[@]}"; do [[ $p == origin ]] || stop_pid "${PEER_PID[$p]}"; done
cp "$TMP/squid/cache.log" "$OUT/squid-cache.log" 2>/dev/null || true

# ---- medians ----------------------------------------------------------------------------
for f in "$OUT"/*.1.json; do
	[[ -e $f ]] || continue
	base=${f%.1.json}
	case $(basename "$base") in
	dns-*) metric=qps ;;
	http-open-*) metric=p99 ;;
	*) metric=rps ;;
	esac
	median_of "$base.json" "$metric" "$base".[0-9]*.json
done

# ---- ratios -----------------------------------------------------------------------
ratio_row() { # suite numerator denominator metric(rps|qps)
	local a="$OUT/$1-$2.json" b="$OUT/$1-$3.json"
	[[ -s $a || -s $b ]] || return 0
	if [[ ! -s $a || ! -s $b ]]; then
		printf '%-13s %-17s n/a (no %s run)\n' "$1" "$2/$3" "$([[ -s $a ]] && echo "$3" || echo "$2")"
		return
	fi
	jq -rn --slurpfile a "$a" --slurpfile b "$b" --arg s "$1" --arg pair "$2/$3" --arg m "$4" '
		def r(x; y): if y == 0 then "n/a" else ((x / y * 100 | round) / 100 | tostring) + "x" end;
		def pad(n): . + "                    " | .[0:n];
		"\($s|pad(13)) \($pair|pad(17)) throughput \(r($a[0][$m]; $b[0][$m]) | pad(6)) (\($a[0][$m]|floor) vs \($b[0][$m]|floor)/s)   " +
		"p99 \(r($a[0].latency.p99_ms; $b[0].latency.p99_ms) | pad(6)) (\($a[0].latency.p99_ms) vs \($b[0].latency.p99_ms) ms)" +
		(if ($a[0].tunnels_per_s // 0) > 0 and ($b[0].tunnels_per_s // 0) > 0 then
			"   tunnels/s \(r($a[0].tunnels_per_s; $b[0].tunnels_per_s)) (\($a[0].tunnels_per_s|floor) vs \($b[0].tunnels_per_s|floor))"
		else "" end)'
}
{
	echo
	echo "Ratios (throughput: higher is better; p99: lower is better); median of $REPEAT run(s) each (open loop: by p99)"
	for s in http https http-open; do
		[[ -e $OUT/$s-direct.json || -e $OUT/$s-squid.json || -e $OUT/$s-cordon.json ]] || continue
		ratio_row "$s" cordon squid rps
		ratio_row "$s" cordon direct rps
		ratio_row "$s" squid direct rps
	done
	for s in dns-hot dns-mixed dns-blocked dns-uncached; do
		[[ -e $OUT/$s-direct.json || -e $OUT/$s-unbound.json || -e $OUT/$s-cordon.json ]] || continue
		ratio_row "$s" cordon unbound qps
		ratio_row "$s" cordon direct qps
		ratio_row "$s" unbound direct qps
	done
	echo
	echo "RSS after load (peak):"
	for f in "$OUT"/rss-*.json; do [[ -e $f ]] && jq -r '"  \(.peer): \(.rss_kb/1024|floor) MiB (\(.hwm_kb/1024|floor) MiB)"' "$f"; done
	echo
	echo "raw outputs: $OUT"
} | tee "$OUT/summary.txt"
