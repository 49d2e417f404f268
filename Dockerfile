# captiond on the CPU (no GPU needed):
#   docker build -t captiond .
#   export CAPTIOND_TOKEN=$(openssl rand -hex 16)   # the clients read it too
#   docker run -p 10095:10095 -e CAPTIOND_TOKEN -v captiond-models:/models captiond
# The first start downloads the FunASR models into the /models volume; add
# `serve --engine whisper` after the image name for the bundled English model.
# For an NVIDIA GPU use Dockerfile.cuda (compose.yaml builds it).
# The registry spelled out: Podman and Buildah do not assume Docker Hub.
FROM docker.io/library/python:3.11-slim

# No ffmpeg package: PyAV's wheel carries the FFmpeg libraries captiond decodes
# with, and the ffmpeg program would add about 680 MB.
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# Where pip looks, for a mirror or a local wheelhouse (unset: PyPI). pip reads
# these from the environment; they stay out of the image's ENV but show in
# `docker history`, so pass URLs without credentials.
ARG PIP_INDEX_URL
ARG PIP_TRUSTED_HOST
# torch from PyTorch's CPU index: PyPI's default wheel is the CUDA build (GBs of
# CUDA libraries a CPU machine never uses).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

WORKDIR /opt/captiond
RUN python -m pip install torch --index-url "$TORCH_INDEX_URL"
COPY pyproject.toml README.md ./
COPY server ./server
COPY streaming ./streaming
COPY clients ./clients
COPY web_demo ./web_demo
RUN python -m pip install '.[whisper,scale]'

# Not root: the server needs no privileges. Models and data live in volumes.
RUN useradd --create-home --uid 10001 captiond \
 && mkdir -p /models /data && chown captiond:captiond /models /data
USER captiond
ENV MODELSCOPE_CACHE=/models/modelscope HF_HOME=/models/huggingface \
    CAPTIOND_HOST=0.0.0.0 CAPTIOND_PORT=10095 \
    CAPTIOND_STORE=/data/transcripts.sqlite3
VOLUME ["/models", "/data"]
WORKDIR /data
EXPOSE 10095
HEALTHCHECK --interval=15s --timeout=5s --start-period=10m --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:10095/healthz', timeout=4)"]
ENTRYPOINT ["captiond"]
CMD ["serve"]
