# Sourced by scripts/test and scripts/bench: the project's Python tools and the emulator.
#
#   python_tools   creates .venv and installs scripts/requirements-test.txt (moto, boto3) into it
#   start_moto     starts scripts/moto_server.py on a free loopback port unless AWS_ENDPOINT_URL
#                  is set, stops it on exit, and exports the AWS settings that point at it

python_tools() {
  echo "== python tools (.venv)"
  if [ ! -x .venv/bin/python3 ]; then
    python3 -m venv .venv || {
      echo "$0: python3 -m venv failed; install the python3-venv package and run this again." >&2
      exit 1
    }
  fi
  if ! cmp -s scripts/requirements-test.txt .venv/.installed-requirements; then
    .venv/bin/python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
    cp scripts/requirements-test.txt .venv/.installed-requirements
  fi
  .venv/bin/python3 -c 'import moto; print("moto", moto.__version__)'
}

start_moto() {
  if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
    echo "== moto"
    local port log
    port="$(.venv/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    log="$(mktemp)"
    .venv/bin/python3 scripts/moto_server.py -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    moto_pid=$!
    trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 1 150); do
      if .venv/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then
        break
      fi
      sleep 0.2
    done
    .venv/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" || { cat "$log"; exit 1; }
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
    echo "moto on $AWS_ENDPOINT_URL"
  fi
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
}
