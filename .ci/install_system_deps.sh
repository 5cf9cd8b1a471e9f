#!/usr/bin/env bash
# System libraries for headless MuJoCo rendering (videos, envs/play.py): EGL with Mesa's software
# rasteriser (MUJOCO_GL=egl) and OSMesa as a fallback (MUJOCO_GL=osmesa). Idempotent: installs only
# what is missing. The test suite does not need these; the rendering test skips without them.
set -euo pipefail

have_lib() { ldconfig -p | grep -q "$1"; }

missing=()
have_lib 'libEGL.so.1 ' || missing+=(libegl1)
have_lib 'libEGL_mesa.so.0 ' || missing+=(libegl-mesa0)
have_lib 'libOSMesa.so' || missing+=(libosmesa6)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -n "$(ls /usr/lib/*/dri/swrast_dri.so 2>/dev/null)" ] \
  || missing+=(libgl1-mesa-dri)

if [ ${#missing[@]} -eq 0 ]; then
  echo "rendering system deps: present"
  exit 0
fi
echo "rendering system deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
