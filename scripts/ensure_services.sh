#!/usr/bin/env bash
# Starts the local PostgreSQL and MariaDB servers when they are down (CI machines).
set -uo pipefail
_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! _up 5432 && command -v pg_ctlcluster >/dev/null; then
  echo "ensure_services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! _up 3306 && [ -x /usr/sbin/mariadbd ]; then
  echo "ensure_services: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for _ in $(seq 1 30); do
  _up 5432 && _up 3306 && exit 0
  sleep 1
done
echo "ensure_services: PostgreSQL or MariaDB still unreachable; their tests will fail" >&2
