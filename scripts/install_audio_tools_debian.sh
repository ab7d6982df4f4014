#!/bin/bash
# Debian's encoders and reference decoders for the real-recordings corpus (scripts/real_audio_corpus.py,
# tests/e2e/test_real_audio.py): ffmpeg and lame make the re-encodings; ffmpeg, mpg123, oggdec and opusdec
# are the independent decoders the pipeline is checked against. Needs root; idempotent.
set -euo pipefail
if command -v ffmpeg >/dev/null && command -v lame >/dev/null && command -v mpg123 >/dev/null \
    && command -v oggdec >/dev/null && command -v opusdec >/dev/null; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends ffmpeg lame mpg123 vorbis-tools opus-tools >/dev/null
