#!/bin/sh
# deploy/entrypoint.sh — the container's entrypoint (deploy/Dockerfile). Runs the bot (python -m engine.runtime)
# and ends with its exit status, so that compose's `restart: unless-stopped` restarts a crash (exit 1, a signal),
# except for the two statuses systemd does not retry either (RestartPreventExitStatus=78 65 in
# deploy/systemd/enygma.service): a start refused for its configuration (78, EX_CONFIG) or a database it cannot use
# (65, EX_DATAERR). No restart can fix those; restarted they loop every few seconds. For them it prints one line
# and keeps the container up without running the bot again: the health check turns unhealthy, and `docker stop`
# (or a restart once fixed) ends the wait at once.
# With arguments it runs them as they are, replacing itself (a one-off: docker compose run --rm enygma <command>).
set -u
if [ "$#" -gt 0 ]; then
  exec "$@"
fi

# PID 1 in a container: the stop signal comes here and goes on to the bot, which shuts down cleanly (one that
# arrives before the bot has started is passed on as soon as it has).
bot="" stop=""
trap 'stop=TERM; [ -z "$bot" ] || kill -TERM "$bot" 2>/dev/null' TERM
trap 'stop=INT; [ -z "$bot" ] || kill -INT "$bot" 2>/dev/null' INT
python -m engine.runtime &
bot=$!
[ -z "$stop" ] || kill -"$stop" "$bot" 2>/dev/null
while :; do
  wait "$bot"
  code=$?
  # A wait cut short by a signal we forwarded returns >128 with the bot still running (or not yet reaped):
  # wait again for its real status.
  kill -0 "$bot" 2>/dev/null && continue
  # Gone already: the shell may have reaped it during the wait the signal cut short, and still holds its status
  # (asked again, it answers it; 127 when that wait had reported it already).
  wait "$bot" 2>/dev/null
  again=$?
  [ "$again" -eq 127 ] || code=$again
  break
done

case "$code" in
  78) what="configuration" reason="EX_CONFIG" ;;
  65) what="database" reason="EX_DATAERR" ;;
  *) exit "$code" ;;
esac
echo "enygma: the bot stopped with exit $code ($reason, the line above says why) and will not be restarted" \
  "until the $what is fixed; fix it, then: docker compose -f deploy/docker-compose.yml restart enygma" >&2
sleeper=""
trap 'kill "$sleeper" 2>/dev/null; exit "$code"' TERM INT
while :; do
  sleep 3600 &
  sleeper=$!
  wait "$sleeper"
done
