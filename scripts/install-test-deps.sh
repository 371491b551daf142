#!/usr/bin/env bash
# System packages the test suite needs on Debian 12 (bookworm), then the project's npm packages:
# - Mesa's lavapipe Vulkan driver from bookworm-backports, so WebGPU (Dawn) runs on the CPU and the WGSL
#   kernels are tested for correctness (bookworm's own Mesa is too old for Dawn);
# - Debian's Chromium, for the dashboard/renderer page tests and the end-to-end test in code-server;
# - build headers code-server's native modules need (installed by scripts/setup-e2e.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
src=/etc/apt/sources.list.d/debian.sources
if [ -f $src ] && ! grep -q bookworm-backports $src; then
  $SUDO sed -i 's/^Suites: bookworm bookworm-updates$/& bookworm-backports/' $src
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium libkrb5-dev libsecret-1-dev libx11-dev libxkbfile-dev xz-utils unzip >/dev/null
npm ci --no-audit --no-fund
if [ -x scripts/setup-e2e.sh ]; then scripts/setup-e2e.sh; fi
