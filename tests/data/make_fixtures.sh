#!/usr/bin/env bash
# make_fixtures.sh - regenerate the synthetic speech fixtures in tests/data/.
#
# Requires: espeak-ng (speech synthesis) and sox with mp3 support
#           (Debian: apt-get install espeak-ng sox libsox-fmt-mp3).
#
# Produces, next to this script:
#   utt01.wav .. utt05.wav  single English sentences, 16 kHz mono 16-bit PCM,
#                           ~0.3 s of digital silence before and after the speech
#   multi.wav               3 sentences in one stream: 0.5 s leading silence,
#                           1.2 s of digital silence between sentences, 0.5 s trailing
#   multi_48k.wav           multi.wav at 48 kHz (for resampling tests)
#   utt01.mp3, utt01.flac   utt01.wav encoded as MP3 / FLAC (server-side decoding)
#   engine_short.wav,       the speech the Paraformer engine tests feed the generated
#   engine_sentence.wav     models (tests/streaming/engines/conftest.py), like uttNN.wav
#   references.json         exact text given to espeak-ng, per file
#                           ({"uttNN.wav": "text", "multi.wav": ["s1", "s2", "s3"]})
#
# Idempotent: every run overwrites the outputs with the same content (dither is
# disabled in sox so the PCM output is deterministic for a given espeak-ng/sox).
# Usage: bash tests/data/make_fixtures.sh
set -euo pipefail

OUT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found" >&2; exit 1; }
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

RATE=16000
EDGE_PAD=0.3      # silence around single utterances (s)
GAP=1.2           # silence between sentences in multi.wav (s)
MULTI_LEAD=0.5    # leading silence of multi.wav (s)
MULTI_TRAIL=0.5   # trailing silence of multi.wav (s)

# Single utterances: "voice|speed_wpm|text". Texts must not contain '"' or '\'.
UTTS=(
    "en-us|160|Thank you very much for coming to see me today."
    "en-us+f3|150|It is going to rain tomorrow afternoon."
    "en-gb|160|Can you help me find my keys?"
    "en-gb|175|The children are playing in the garden."
    "en-us+f3|145|Where is the nearest train station?"
)
# Engine-test clips: "name|voice|speed_wpm|text" (same processing as the utterances).
ENGINE_CLIPS=(
    "engine_short|en|175|hello there"
    "engine_sentence|en|175|live captions for the meeting room, on one GPU box"
)
# Sentences of multi.wav, in order.
MULTI=(
    "en-us|165|Good morning everyone and welcome to the meeting."
    "en-gb|165|Today we will talk about the new project plan."
    "en-us+f3|165|Please let me know if you have any questions."
)

# synth SPEC OUT.wav: speak, convert to 16 kHz mono s16, strip espeak's own
# leading/trailing silence, normalise to -3 dBFS. No padding.
synth() {
    local spec="$1" out="$2" voice speed text
    IFS='|' read -r voice speed text <<<"$spec"
    case "$text" in *'"'* | *'\'*) echo "error: bad character in: $text" >&2; exit 1 ;; esac
    espeak-ng -v "$voice" -s "$speed" -w "$TMP/raw.wav" "$text"
    sox -D "$TMP/raw.wav" -r "$RATE" -c 1 -b 16 -e signed-integer "$out" \
        silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse \
        norm -3 rate -v "$RATE"
}

json_str() { printf '"%s"' "$1"; }

refs="{"
n=0
for spec in "${UTTS[@]}"; do
    n=$((n + 1))
    name="$(printf 'utt%02d.wav' "$n")"
    synth "$spec" "$TMP/speech.wav"
    sox -D "$TMP/speech.wav" -b 16 "$OUT_DIR/$name" pad "$EDGE_PAD" "$EDGE_PAD"
    refs+=$'\n'"  $(json_str "$name"): $(json_str "${spec#*|*|}"),"
done

for clip in "${ENGINE_CLIPS[@]}"; do
    name="${clip%%|*}.wav"
    spec="${clip#*|}"
    synth "$spec" "$TMP/speech.wav"
    sox -D "$TMP/speech.wav" -b 16 "$OUT_DIR/$name" pad "$EDGE_PAD" "$EDGE_PAD"
    refs+=$'\n'"  $(json_str "$name"): $(json_str "${spec#*|*|}"),"
done

# multi.wav: lead + s1 + gap + s2 + gap + s3 + trail
parts=()
multi_refs=()
last=$((${#MULTI[@]} - 1))
for i in "${!MULTI[@]}"; do
    spec="${MULTI[$i]}"
    synth "$spec" "$TMP/m$i.wav"
    pre=0; post="$GAP"
    [[ $i -eq 0 ]] && pre="$MULTI_LEAD"
    [[ $i -eq $last ]] && post="$MULTI_TRAIL"
    sox -D "$TMP/m$i.wav" "$TMP/p$i.wav" pad "$pre" "$post"
    parts+=("$TMP/p$i.wav")
    multi_refs+=("$(json_str "${spec#*|*|}")")
done
sox -D "${parts[@]}" -b 16 "$OUT_DIR/multi.wav"
sox -D "$OUT_DIR/multi.wav" -r 48000 -b 16 "$OUT_DIR/multi_48k.wav" rate -v 48000

joined="$(IFS=','; echo "${multi_refs[*]}")"
refs+=$'\n'"  $(json_str multi.wav): [${joined//\",\"/\", \"}],"
refs+=$'\n'"  $(json_str multi_48k.wav): [${joined//\",\"/\", \"}]"
refs+=$'\n'"}"
printf '%s\n' "$refs" >"$OUT_DIR/references.json"

# Compressed copies of utt01 (64 kbit/s CBR MP3, FLAC level 8).
rm -f "$OUT_DIR/utt01.mp3" "$OUT_DIR/utt01.flac"
sox -D "$OUT_DIR/utt01.wav" -C 64 "$OUT_DIR/utt01.mp3"
sox -D "$OUT_DIR/utt01.wav" -C 8 "$OUT_DIR/utt01.flac"

echo "fixtures written to $OUT_DIR:"
(cd "$OUT_DIR" && ls -l utt*.wav engine_*.wav multi.wav multi_48k.wav utt01.mp3 utt01.flac references.json)
