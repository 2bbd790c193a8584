#!/usr/bin/env bash
# Benchmarks the example servers against their standard-library twins
# with wrk on loopback:
#   fileserver (pipes)  vs net/http FileServer (sendfile)
#   proxy (pipes.Relay) vs proxy (io.Copy), both in front of the backend
# at 1, 64 and 1024 connections for 4 KiB, 64 KiB, 1 MiB and 64 MiB files.
# Where they are installed (apt-get install -y haproxy nginx-light), the
# C anchors join: nginx (sendfile on) serving the same files, and
# HAProxy (mode tcp, option splice-auto, one thread per core) relaying to
# the same backend; nginx is then the backend of every proxy, else
# net/http is.
# Prints requests/s, MB/s and the server's CPU seconds per GB sent
# (utime+stime of the server process, from /proc/PID/stat; for the
# proxies, of the proxy alone, not its backend).
#
# Usage: examples/bench.sh            (DUR=5s CONNS="1 64 1024" SIZES="4k 64k 1m 64m")
# HDR="Connection: close" makes every request a connection of its own
# (wrk sends the header; the servers and nginx close after the
# response), which measures what a relay or a copy costs to set up.
# Needs wrk (apt-get install -y wrk). Run from the repository root.
set -euo pipefail

DUR=${DUR:-5s}
CONNS=${CONNS:-"1 64 1024"}
SIZES=${SIZES:-"4k 64k 1m 64m"}
THREADS=${THREADS:-2}
HDR=${HDR:-}
ulimit -n 65536 2>/dev/null || true
if ! command -v wrk >/dev/null 2>&1; then
	echo "bench.sh: wrk not found (apt-get install -y wrk)" >&2
	exit 1
fi

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/fileserver" ./examples/fileserver
go build -o "$work/proxy" ./examples/proxy
mkdir -p "$work/www"
head -c 4096 /dev/urandom >"$work/www/4k"
head -c 65536 /dev/urandom >"$work/www/64k"
head -c $((1 << 20)) /dev/urandom >"$work/www/1m"
head -c $((64 << 20)) /dev/urandom >"$work/www/64m"
cat "$work/www/"* >/dev/null # page cache: every run is hot

start() { # name cmd...
	local name=$1
	shift
	"$@" 2>"$work/$name.log" &
	pids+=($!)
	eval "pid_$name=$!"
}
start pipes "$work/fileserver" -addr 127.0.0.1:18080 -root "$work/www"
start nethttp "$work/fileserver" -impl nethttp -addr 127.0.0.1:18081 -root "$work/www"
servers="nethttp:18081 pipes:18080"
backend=127.0.0.1:18081
if command -v nginx >/dev/null 2>&1; then
	cat >"$work/nginx.conf" <<CONF
daemon off;
user root;
worker_processes $(nproc);
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 8192; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	server { listen 127.0.0.1:18082; root $work/www; }
}
CONF
	start nginx nginx -c "$work/nginx.conf"
	servers="$servers nginx:18082"
	backend=127.0.0.1:18082
fi
start proxypipes "$work/proxy" -addr 127.0.0.1:19090 -backend "$backend"
start proxyio "$work/proxy" -impl iocopy -addr 127.0.0.1:19091 -backend "$backend"
servers="$servers proxyio:19091 proxypipes:19090"
if command -v haproxy >/dev/null 2>&1; then
	cat >"$work/haproxy.cfg" <<CONF
global
	maxconn 4000
	ulimit-n 16000
	nbthread $(nproc)
defaults
	mode tcp
	option splice-auto
	timeout connect 5s
	timeout client 60s
	timeout server 60s
listen relay
	bind 127.0.0.1:19092
	server backend $backend
CONF
	start haproxy haproxy -f "$work/haproxy.cfg"
	servers="$servers haproxy:19092"
fi
sleep 1

cpu() { # ticks of user+system time of a process and its children (nginx's workers)
	local pids=("$1") t=0 p
	pids+=($(pgrep -P "$1" || true))
	for p in "${pids[@]}"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
tomb() { # wrk's "1.23GB" -> MB
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		f = 1e-6; if (u == "KB") f = 1024 / 1e6; if (u == "MB") f = 1048576 / 1e6; if (u == "GB") f = 1073741824 / 1e6
		printf "%.0f", n * f }'
}
hz=$(getconf CLK_TCK)
secs=${DUR%s}

# Each cell starts one server later than the one before it: a server
# pays for what the run before it left behind (TIME_WAITs, write-back,
# a warm or cold CPU cache), and with a fixed order the same one always
# would.
read -r -a order <<<"$servers"
cell=0
printf "| server | file | conns | req/s | MB/s | server CPU s/GB |\n|---|---|---|---|---|---|\n"
for size in $SIZES; do
	for c in $CONNS; do
		for ((k = 0; k < ${#order[@]}; k++)); do
			srv=${order[$(((k + cell) % ${#order[@]}))]}
			name=${srv%%:*} port=${srv##*:}
			pid_var=pid_$name
			pid=${!pid_var}
			before=$(cpu "$pid")
			t=$((c < THREADS ? c : THREADS))
			out=$(wrk -t"$t" -c"$c" -d"$DUR" --timeout 30s ${HDR:+-H "$HDR"} "http://127.0.0.1:$port/$size" 2>&1 || true)
			after=$(cpu "$pid")
			rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
			if [ -z "$rps" ]; then
				# No figure from wrk: say why rather than print a row of 0.
				echo "bench.sh: wrk against $name ($size, $c connections) gave no result:" >&2
				head -5 <<<"$out" >&2
			fi
			tr=$(awk '/Transfer\/sec/ {print $2}' <<<"$out")
			mbs=$(tomb "${tr:-0}")
			cpg=$(awk -v t=$((after - before)) -v hz="$hz" -v mbs="$mbs" -v s="$secs" \
				'BEGIN { gb = mbs * s / 1000; if (gb > 0) printf "%.2f", t / hz / gb; else print "-" }')
			printf "| %s | %s | %s | %s | %s | %s |\n" "$name" "$size" "$c" "${rps:-0}" "$mbs" "$cpg"
		done
		cell=$((cell + 1))
	done
done
