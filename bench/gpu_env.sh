# Sourced by bench/gpu_run.sh and bench/gpu_profile.sh: on a GPU machine with
# no network, install captiond's dependencies from wheels carried in .whl/ (made here
# by bench/gpu_wheels.sh)
# (NO_WHEELS=1 skips it, for a dry run here) and put the checkout and py-spy
# on the paths.
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl 2>&1 | tail -3
    export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
export PYTHONUNBUFFERED=1
