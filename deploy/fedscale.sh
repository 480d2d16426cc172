#!/usr/bin/env bash
# fedscale.sh: measure what a federation costs, with real processes — a hub
# and N spoke domains, each its own `writ init` and `writ serve`, linked by
# leafnodes as the README describes — on loopback.
#
#   deploy/fedscale.sh SPOKES [IDLE_SECONDS] [WRIT_BINARY]
#
# It prints, for the idle window (no requests at all): the leafnode
# traffic each spoke sends and receives (TCP bytes, protocol included, from
# ss), the CPU of every process together (% of one core), the hub's RSS
# sampled every 10 s; then every spoke asks the hub for one action, and it
# prints how many were granted and the hub's server-side request→grant
# (stored time of the first event to the last, from `writ audit replay`),
# cross-domain against same-domain. Everything it starts it stops, by PID.
# Work files go to $FEDSCALE_DIR (default: a temporary directory, removed).
set -euo pipefail

spokes=${1:?usage: fedscale.sh SPOKES [IDLE_SECONDS] [WRIT_BINARY]}
idle=${2:-60}
writ=${3:-}
base=${FEDSCALE_PORT:-14400}   # hub NATS; spokes base+1..; leaf base-1
leafport=$((base - 1))
dir=${FEDSCALE_DIR:-$(mktemp -d)}
keep=${FEDSCALE_DIR:+yes}
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "$keep" ] || rm -rf "$dir"
}
trap cleanup EXIT

if [ -z "$writ" ]; then
	writ=$dir/writ
	go build -o "$writ" ./cmd/writ
fi
names=()
for i in $(seq 1 "$spokes"); do names+=("$(printf 's%03d' "$i")"); done

"$writ" init --dir "$dir/hub" --domain hub --port "$base" >/dev/null
cat >"$dir/hub/policies/partners.cedar" <<'EOF'
@id("partners-deploy-staging")
@max_ttl("10m")
permit (principal, action == Action::"deploy", resource)
when { resource.path like "staging/*" };
EOF
i=0
for d in "${names[@]}"; do
	i=$((i + 1))
	"$writ" init --dir "$dir/$d" --domain "$d" --port $((base + i)) >/dev/null
	"$writ" trust add --dir "$dir/hub" --from "$dir/$d" >/dev/null
	"$writ" trust add --dir "$dir/$d" --from "$dir/hub" --domain hub >/dev/null
	"$writ" identity issue --dir "$dir/hub" --domain hub --role leaf --name "$d" --out "$dir/$d/leaf-hub.creds" >/dev/null
	jq --arg u "nats-leaf://127.0.0.1:$leafport" '.federation = {remotes: [$u], creds: "leaf-hub.creds"}' \
		"$dir/$d/writ.json" >"$dir/$d/writ.json.new" && mv "$dir/$d/writ.json.new" "$dir/$d/writ.json"
done
jq --arg l "127.0.0.1:$leafport" --args '.federation = {listen: $l, spokes: $ARGS.positional}' \
	"${names[@]}" <"$dir/hub/writ.json" >"$dir/hub/writ.json.new" && mv "$dir/hub/writ.json.new" "$dir/hub/writ.json"

# The hub's runtime reports each garbage collection on its log (gctrace):
# the live heap after the last one is printed with its RSS.
GODEBUG=gctrace=1 "$writ" serve --dir "$dir/hub" ${FEDSCALE_HUB_FLAGS:-} >"$dir/hub.log" 2>&1 &
pids+=($!)
hubpid=$!
for d in "${names[@]}"; do
	"$writ" serve --dir "$dir/$d" >"$dir/$d.log" 2>&1 &
	pids+=($!)
done

# Linked: every spoke has its leafnode connection established.
deadline=$((SECONDS + 60 + spokes))
while [ "$(ss -Htn state established "( dport = :$leafport )" | wc -l)" -lt "$spokes" ]; do
	[ $SECONDS -lt $deadline ] || { echo "not every spoke linked within $((60 + spokes)) s" >&2; exit 1; }
	sleep 1
done
sleep 20 # settle: consumers made, watchers started

bytes() { # total bytes sent and received by the spokes' ends of the leaf links
	ss -Htni state established "( dport = :$leafport )" |
		grep -o 'bytes_sent:[0-9]*\|bytes_received:[0-9]*' | awk -F: '{s[$1]+=$2} END {print s["bytes_sent"]+0, s["bytes_received"]+0}'
}
ticks() { # CPU ticks of every process started
	local t=0
	for p in "${pids[@]}"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo $t
}
rss() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$hubpid/status"; }

read -r s0 r0 < <(bytes)
c0=$(ticks)
t0=$(date +%s.%N)
samples=("$(rss)")
for _ in $(seq 1 $((idle / 10))); do
	sleep 10
	samples+=("$(rss)")
done
sleep $((idle % 10))
read -r s1 r1 < <(bytes)
c1=$(ticks)
t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
awk -v n="$spokes" -v s="$((s1 - s0))" -v r="$((r1 - r0))" -v c="$((c1 - c0))" -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN {
	w = t1 - t0
	printf "spokes %d, idle %.0f s: per spoke %.1f B/s out, %.1f B/s in over its leaf link; CPU of all %d processes %.1f%% of one core\n",
		n, w, s / n / w, r / n / w, n + 1, 100 * c / hz / w
}'
echo "hub RSS (MB, every 10 s): ${samples[*]}"
echo "hub live heap after its last GC: $(grep '^gc ' "$dir/hub.log" | tail -1 | sed -E 's/.*->([0-9]+) MB, ([0-9]+) MB goal.*/\1 MB (goal \2 MB)/')"

# Every spoke asks the hub once; the hub's own bot asks as often as a
# tenth of the spokes (at least 3), for the same-domain figure.
ok=0
for d in "${names[@]}"; do
	if "$writ" request --dir "$dir/$d" --creds "$dir/$d/creds/deploy-bot.creds" --domain hub \
		--action deploy --resource staging/web --reason fedscale --wait >/dev/null 2>>"$dir/requests.err"; then
		ok=$((ok + 1))
	fi
done
own=$(((spokes + 9) / 10)); [ $own -ge 3 ] || own=3
for _ in $(seq 1 $own); do
	"$writ" request --dir "$dir/hub" --creds "$dir/hub/creds/deploy-bot.creds" \
		--action deploy --resource staging/web --reason fedscale --wait >/dev/null
done
echo "cross-domain grants: $ok of $spokes"
"$writ" audit replay --dir "$dir/hub" --format table >"$dir/table.txt"
awk 'NR > 1 && $7 == "granted" {
	d = $8; ms = d ~ /ms$/ ? d + 0 : (d ~ /µs$/ ? d / 1000 : d * 1000)
	if ($4 ~ /^hub\//) own[++no] = ms; else cross[++nc] = ms
} function median(a, n,    i, j, t) {
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n ? (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) : 0
} END {
	printf "hub request→grant (first to last stored event), median: cross-domain %.0f ms (%d), same-domain %.0f ms (%d)\n", median(cross, nc), nc, median(own, no), no
}' "$dir/table.txt"
