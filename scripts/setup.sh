#!/usr/bin/env bash
# Installs what framecast needs on Debian/Ubuntu (idempotent): cmake and nasm for turbojpeg's
# vendored libjpeg-turbo, ALSA headers for cpal, OpenCV with clang for the opencv crate (and
# the v4l crate's bindgen),
# FFmpeg's development files for ffmpeg-next (movie files, the Matroska recorder); and
# for the tests and benchmarks: ffmpeg/ffprobe (test media, reading recordings back), Xvfb
# (window tests), GStreamer and srt-live-transmit (the benchmarks' yardsticks), PulseAudio with
# its tools and ALSA's pulse plugin (the sound test plays through a null sink and records its
# monitor). Runs apt only when something is missing.
set -euo pipefail
packages=(cmake nasm pkg-config libasound2-dev libopencv-dev clang libclang-dev
          ffmpeg libavformat-dev libavcodec-dev libavutil-dev libswresample-dev libswscale-dev
          xvfb xauth gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          gstreamer1.0-plugins-bad gstreamer1.0-libav srt-tools chromium python3-prometheus-client
          pulseaudio pulseaudio-utils libasound2-plugins)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q "${missing[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found: install Rust from https://rustup.rs first" >&2
    exit 1
fi
