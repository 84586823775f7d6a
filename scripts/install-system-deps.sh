#!/usr/bin/env bash
# Debian packages the corpus renderer needs (FluidSynth, General MIDI soundfonts, espeak-ng) and
# the browser tests of tada studio need (Chromium and its WebDriver).
# Installs only what is missing, so a prepared machine costs nothing.
set -euo pipefail
need=()
command -v fluidsynth >/dev/null 2>&1 || need+=(fluidsynth)
dpkg -s libfluidsynth3 >/dev/null 2>&1 || need+=(libfluidsynth3)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)
[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || need+=(timgm6mb-soundfont)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
