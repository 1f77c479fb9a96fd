#!/usr/bin/env bash
# The main job on a local fleet: podman containers as hosts, a Redis host, and
# ansible-playbook rolling out proc_publisher with the playbook users copy, and raptor
# web (the dashboard) on the Redis host, published on this machine's loopback.
#   demo/demo.sh up     create (or reuse) the fleet, roll out, show it live
#   demo/demo.sh down   remove the fleet
# Environment: RAPTOR_DEMO_PREFIX (container names, default raptor-demo),
# RAPTOR_DEMO_REDIS_PORT (loopback port of the demo's Redis, default 16390),
# RAPTOR_DEMO_WEB_PORT (loopback port of its raptor web, default 16391).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/molecule/containers.conf}"
export PATH="$ROOT/.venv/bin:$PATH"
PREFIX="${RAPTOR_DEMO_PREFIX:-raptor-demo}"
PORT="${RAPTOR_DEMO_REDIS_PORT:-16390}"
WEB_PORT="${RAPTOR_DEMO_WEB_PORT:-16391}"
NETWORK="$PREFIX-net"
PASSWORD="demo-pass"
STATE="$ROOT/build/$PREFIX"
REDIS_URL="redis://:$PASSWORD@127.0.0.1:$PORT/0"
WEB_URL="http://127.0.0.1:$WEB_PORT/"
# raptor web listens on 0.0.0.0 inside the Redis container (so that the published port
# reaches it), hence with a token: made once per demo fleet, kept here.
WEB_TOKEN_FILE="$STATE/web-token"
# inventory name, container hostname (deliberately not the same), image
HOSTS=("web1 ip-10-42-0-11.demo.internal 12" "web2 ip-10-42-0-12.demo.internal 13" "worker1 ip-10-42-0-13.demo.internal 13")

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Every wait has a deadline: `within SECONDS WHAT command...` runs the command under
# timeout(1) and, if it runs out, says what it waited for.
within() {
  local seconds="$1" what="$2" code=0
  shift 2
  timeout "$seconds" "$@" || code=$?
  if [ "$code" = 124 ]; then
    echo "demo: gave up after $seconds s waiting for $what" >&2
  fi
  return "$code"
}

# The last lines of each fleet host's listener log: what to look at when the fleet is silent.
listener_logs() {
  for entry in "${HOSTS[@]}"; do
    local name="${entry%% *}"
    echo "--- $name: /var/log/supervisor/proc_publisher.log (last lines)" >&2
    timeout 20 podman exec "$PREFIX-$name" tail -n 5 /var/log/supervisor/proc_publisher.log >&2 2>/dev/null \
      || echo "(no log: the listener never started)" >&2
  done
}

# raptor web's log on the Redis host: what to look at when the dashboard does not answer.
web_log() {
  echo "--- $PREFIX-redis: /var/log/supervisor/raptor_web.log (last lines)" >&2
  timeout 20 podman exec "$PREFIX-redis" tail -n 10 /var/log/supervisor/raptor_web.log >&2 2>/dev/null \
    || echo "(no log: raptor web never started)" >&2
}

# Whether container $1 publishes exactly the ports "$2" (e.g. "6379/tcp=127.0.0.1:16390
# 8642/tcp=127.0.0.1:16391"): a container made by an older demo lacks the web's.
publishes() {
  local bindings
  bindings=$(within 30 "podman container inspect $1" podman container inspect --format '{{json .HostConfig.PortBindings}}' "$1") || return 1
  python - "$bindings" "$2" <<'PY'
import json, sys
found = {port: sorted(f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}" for b in binds or [])
         for port, binds in (json.loads(sys.argv[1]) or {}).items()}
wanted = {}
for item in sys.argv[2].split():
    port, _, address = item.partition("=")
    wanted[port] = [address]
sys.exit(0 if found == wanted else 1)
PY
}

down() {
  local names=("$PREFIX-redis")
  for entry in "${HOSTS[@]}"; do names+=("$PREFIX-${entry%% *}"); done
  podman rm -f -t 0 "${names[@]}" >/dev/null 2>&1 || true
  podman network rm -f "$NETWORK" >/dev/null 2>&1 || true
  rm -rf "$STATE"
  echo "demo fleet $PREFIX removed"
}

# A command whose output must keep coming: `progressing IDLE TOTAL WHAT LOG command...`
# runs it with its output in LOG and stops it when LOG has not grown for IDLE seconds (a
# hung task), or after TOTAL seconds, saying which and the last task it was in. A busy
# machine makes a roll-out slower, not failed: a playbook prints a line per task and host.
progressing() {
  local idle="$1" total="$2" what="$3" log="$4" pid size last=-1 changed=$SECONDS started=$SECONDS why=""
  shift 4
  # Its own process group, so that a stop reaches ansible-playbook's workers too; an
  # interrupted demo stops it as well.
  setsid "$@" >"$log" 2>&1 &
  pid=$!
  trap 'kill -- -"$pid" 2>/dev/null; exit 130' INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    size=$(stat -c %s "$log" 2>/dev/null || echo 0)
    if [ "$size" != "$last" ]; then
      last=$size
      changed=$SECONDS
    fi
    if ((SECONDS - changed > idle)); then
      why="no new output for $idle s"
    elif ((SECONDS - started > total)); then
      why="still running after $total s"
    fi
    if [ -n "$why" ]; then
      kill -- -"$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      trap - INT TERM
      echo "demo: gave up waiting for $what: $why; it was at: $(grep -E '^(TASK|PLAY|RUNNING HANDLER) ' "$log" | tail -n 1)" >&2
      return 124
    fi
    sleep 1
  done
  trap - INT TERM
  wait "$pid"
}

playbook() {  # playbook [ansible-playbook options...]: its recap, or all its output if it fails
  local log="$STATE/ansible.log" code=0
  progressing 300 600 "ansible-playbook $(basename "$1")" "$log" ansible-playbook -i "$STATE/inventory.yml" "$@" || code=$?
  if [ "$code" != 0 ]; then
    cat "$log" >&2
    return "$code"
  fi
  tail -n 6 "$log"
}

container() {  # name hostname image [podman run options...]
  local name="$1" hostname="$2" image="$3"
  shift 3
  if podman container exists "$name"; then
    within 60 "podman start $name" podman start "$name" >/dev/null
  else
    within 60 "podman run $name" podman run -d --name "$name" --hostname "$hostname" --network "$NETWORK" "$@" \
      "localhost/raptor-debian:$image" sleep infinity >/dev/null
  fi
}

up() {
  local started=$SECONDS
  say "1/5 containers: a Redis host and three fleet hosts ($PREFIX-*)"
  if podman network exists "$NETWORK" && [ "$(podman network inspect "$NETWORK" --format '{{.DNSEnabled}}')" != true ]; then
    # Made before the dnsname plugin was installed: its containers cannot resolve
    # "$PREFIX-redis". Start over with a network that can.
    echo "  network $NETWORK resolves no container names (made before dnsname was installed): recreating the fleet"
    down >/dev/null
  fi
  podman network exists "$NETWORK" || podman network create "$NETWORK" >/dev/null
  if [ "$(podman network inspect "$NETWORK" --format '{{.DNSEnabled}}')" != true ]; then
    echo "demo: podman network $NETWORK has no name resolution; run: make deps (installs the CNI dnsname plugin), then make doctor" >&2
    return 1
  fi
  # Redis, and raptor web (8642 in the container), each on this machine's loopback only.
  if podman container exists "$PREFIX-redis" \
    && ! publishes "$PREFIX-redis" "6379/tcp=127.0.0.1:$PORT 8642/tcp=127.0.0.1:$WEB_PORT"; then
    echo "  container $PREFIX-redis does not publish 127.0.0.1:$PORT -> 6379 and 127.0.0.1:$WEB_PORT -> 8642" \
      "(made by an older demo, or with other ports): recreating it; the listeners publish to the new one"
    within 60 "podman rm $PREFIX-redis" podman rm -f -t 0 "$PREFIX-redis" >/dev/null
  fi
  container "$PREFIX-redis" "$PREFIX-redis" 12 --publish "127.0.0.1:$PORT:6379" --publish "127.0.0.1:$WEB_PORT:8642"
  for entry in "${HOSTS[@]}"; do
    read -r name hostname image <<<"$entry"
    container "$PREFIX-$name" "$hostname" "$image"
    printf '  %-8s container %-22s hostname %s (Debian %s)\n' "$name" "$PREFIX-$name" "$hostname" "$image"
  done

  mkdir -p "$STATE" "$ROOT/build/collections/ansible_collections/velociraptor"
  if [ ! -s "$WEB_TOKEN_FILE" ]; then
    (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(24))' >"$WEB_TOKEN_FILE")
  fi
  local web_token
  web_token=$(<"$WEB_TOKEN_FILE")
  ln -sfn "$ROOT" "$ROOT/build/collections/ansible_collections/velociraptor/raptor"
  {
    echo "all:"
    echo "  vars:"
    echo "    ansible_connection: containers.podman.podman"
    echo "    ansible_python_interpreter: /usr/bin/python3"
    echo "    ansible_become: false  # containers run as root and have no sudo"
    echo "    raptor_redis_password: $PASSWORD"
    echo "    raptor_programs_per_host: 3"
    echo "  children:"
    echo "    redis:"
    echo "      vars:"
    echo "        raptor_web_redis_url: redis://:$PASSWORD@127.0.0.1:6379/0"
    echo "        raptor_web_wheelhouse: $ROOT/build/wheelhouse"
    echo "        raptor_web_install_supervisor: true"
    echo "        raptor_web_bind: 0.0.0.0"
    echo "        raptor_web_token: \"{{ lookup('ansible.builtin.file', '$WEB_TOKEN_FILE') }}\""
    echo "      hosts:"
    echo "        $PREFIX-redis:"
    echo "    fleet:"
    echo "      vars:"
    echo "        proc_publisher_redis_url: redis://:$PASSWORD@$PREFIX-redis:6379/0"
    echo "        proc_publisher_wheelhouse: $ROOT/build/wheelhouse"
    echo "      hosts:"
    for entry in "${HOSTS[@]}"; do
      read -r name _ _ <<<"$entry"
      echo "        $name: {ansible_host: $PREFIX-$name}"
    done
  } >"$STATE/inventory.yml"
  # The collection comes from this checkout, never from ~/.ansible.
  export ANSIBLE_COLLECTIONS_PATH="$ROOT/build/collections" ANSIBLE_NOCOLOR=1 ANSIBLE_DISPLAY_SKIPPED_HOSTS=false
  export ANSIBLE_CALLBACK_RESULT_FORMAT=yaml ANSIBLE_STDOUT_CALLBACK=default

  say "2/5 prepare: supervisor and three programs on each fleet host, redis-server on the Redis host"
  playbook "$ROOT/molecule/shared/prepare.yml"

  say "3/5 roll out: ansible-playbook playbooks/site.yml (the playbook you copy): proc_publisher on the fleet, raptor web on the Redis host"
  playbook "$ROOT/playbooks/site.yml" -e proc_publisher_hosts=fleet -e raptor_web_hosts=redis
  within 60 "every fleet host to publish its snapshot to Redis" python - "$REDIS_URL" "${HOSTS[@]%% *}" <<'PY' || { listener_logs; return 1; }
import sys, time, redis
client = redis.Redis.from_url(sys.argv[1], socket_timeout=5)
hosts, missing, said = sys.argv[2:], sys.argv[2:], ""
while missing:
    try:
        missing = [h for h in hosts if not client.exists(f"host_procs:{h}")]
        news = f"  not published yet: {' '.join(missing)}"
    except redis.RedisError as exc:
        news = f"  the demo's Redis does not answer: {exc}"
    if news != said and missing:  # say what it sees, once per change
        print(news, file=sys.stderr, flush=True)
        said = news
    if missing:
        time.sleep(0.2)
print(f"  every fleet host publishes: {' '.join(hosts)}")
PY
  within 60 "raptor web to list the fleet on ${WEB_URL}api/fleet" python - "$WEB_URL" "$WEB_TOKEN_FILE" "${HOSTS[@]%% *}" <<'PY' || { web_log; return 1; }
import base64, json, sys, time, urllib.error, urllib.request
url, token_file, hosts = sys.argv[1], sys.argv[2], sorted(sys.argv[3:])
token = open(token_file, encoding="utf-8").read().strip()
login = base64.b64encode(f"demo:{token}".encode()).decode()
said = ""
while True:
    try:
        request = urllib.request.Request(url + "api/fleet", headers={"Authorization": f"Basic {login}"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            listed = sorted(h["host"] for h in json.load(answer)["hosts"])
        news = f"  raptor web lists: {' '.join(listed) or 'no host yet'}"
        if listed == hosts:
            break
    except (OSError, ValueError, KeyError) as exc:  # not listening yet, 503 while Redis is away...
        news = f"  raptor web does not answer yet: {exc}"
    if news != said:
        print(news, file=sys.stderr, flush=True)
        said = news
    time.sleep(0.5)
print(f"  raptor web lists the fleet on {url} (basic auth: any user, the token as the password)")
PY

  say "4/5 live: restarting a program on web1 and one on worker1; their messages as they arrive"
  # Where the fleet's history ends now: raptor tail reads on from there, so it cannot
  # miss the restarts however late it starts.
  local since
  since=$(within 20 "the history stream's last entry" python - "$REDIS_URL" <<'PY'
import sys, redis
last = redis.Redis.from_url(sys.argv[1], socket_timeout=5).xrevrange("proc_history", count=1)
print(last[0][0].decode() if last else "0-0")
PY
) || return 1
  # timeout(1) itself in the background (not a shell function): $! is then the process
  # to kill, and nothing outlives the demo.
  timeout 60 raptor tail --redis-url "$REDIS_URL" --since "($since" --format line --event 'PROCESS_STATE_*' --count 8 &
  local tail_pid=$! tail_code=0
  within 60 "supervisorctl restart on web1" \
    podman exec "$PREFIX-web1" supervisorctl restart node_example-v1-local-f96054b7-web-5000 >/dev/null
  within 60 "supervisorctl restart on worker1" \
    podman exec "$PREFIX-worker1" supervisorctl restart node_example-v3-local-f96054b7-web-5002 >/dev/null
  wait "$tail_pid" || tail_code=$?
  if [ "$tail_code" != 0 ]; then
    [ "$tail_code" = 124 ] && echo "demo: gave up after 60 s waiting for 8 transitions from raptor tail" >&2
    listener_logs
    return 1
  fi

  say "5/5 the fleet, read back from Redis: raptor status"
  local code=0
  within 30 "raptor status" raptor status --redis-url "$REDIS_URL" || code=$?
  if [ "$code" = 0 ]; then
    echo "no duplicate hosts: every host publishes under its inventory name, not its container hostname"
  fi
  echo
  echo "and the history of the program restarted on web1 (raptor history):"
  within 30 "raptor history" raptor history web1 node_example-v1-local-f96054b7-web-5000 --since 10m \
    --redis-url "$REDIS_URL" || code=$?
  cat <<TXT

Done in $((SECONDS - started)) s. The fleet keeps running. Try:
  export REDIS_URL=$REDIS_URL
  .venv/bin/raptor watch                                   # live view; Ctrl-C to leave
  .venv/bin/raptor history web2 --since 1h                 # what web2's programs did
  podman exec $PREFIX-web2 supervisorctl restart all       # watch it happen
  podman exec $PREFIX-redis pkill redis-server             # break Redis ...
  podman exec $PREFIX-redis redis-server --requirepass $PASSWORD --protected-mode no --daemonize yes
                                                           # ... bring it back: the view resyncs
  make demo-down                                           # remove it all

raptor web, the live dashboard, served by supervisord on $PREFIX-redis (your browser asks
for a login: any user name, and the token $web_token as the password;
also in $WEB_TOKEN_FILE):
  $WEB_URL
TXT
  return "$code"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
